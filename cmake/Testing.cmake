# Helpers to declare tests. Each test binary is one CTest test (not one per TEST), so an
# integration binary pays its servers' start-up once.
#   zk2etcd_add_unit_test(name sources... LIBS libs...)         label "unit"
#   zk2etcd_add_integration_test(name sources... LIBS libs...)  label "integration", real servers
function(_zk2etcd_add_test name label timeout)
  cmake_parse_arguments(ARG "" "" "LIBS" ${ARGN})
  add_executable(${name} ${ARG_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gmock GTest::gtest_main
                        zk2etcd_compiler_settings zk2etcd_warnings)
  add_test(NAME ${name} COMMAND ${name} --gtest_color=no)
  set_tests_properties(${name} PROPERTIES LABELS ${label} TIMEOUT ${timeout})
endfunction()

function(zk2etcd_add_unit_test name)
  _zk2etcd_add_test(${name} unit 300 ${ARGN})
endfunction()

function(zk2etcd_add_integration_test name)
  cmake_parse_arguments(ARG "" "" "LIBS" ${ARGN})
  _zk2etcd_add_test(${name} integration 900 ${ARG_UNPARSED_ARGUMENTS}
                    LIBS ${ARG_LIBS} zk2etcd_testing)
endfunction()
