# zk2etcd_build_info: a tiny library whose one source file carries the version, the git commit and
# the build date. The file is regenerated on every build but rewritten only when the commit (or
# the dirty flag) changes, so an unchanged tree does not relink.
set(_build_info_cc ${CMAKE_BINARY_DIR}/generated/build_info_values.cc)
add_custom_target(zk2etcd_build_info_gen
  BYPRODUCTS ${_build_info_cc}
  COMMAND ${CMAKE_COMMAND}
          -DSOURCE_DIR=${CMAKE_SOURCE_DIR} -DOUTPUT=${_build_info_cc}
          -DVERSION=${PROJECT_VERSION} -DETCD_PROTO_VERSION=${ETCD_PROTO_VERSION}
          -P ${CMAKE_SOURCE_DIR}/cmake/write_build_info.cmake
  COMMENT "build info"
  VERBATIM)
add_library(zk2etcd_build_info STATIC ${_build_info_cc})
add_dependencies(zk2etcd_build_info zk2etcd_build_info_gen)
target_link_libraries(zk2etcd_build_info PRIVATE zk2etcd_compiler_settings)
