# etcd_proto: a static library of etcd v3's protobuf messages and gRPC stubs.
#
# The .proto files are not in the repository: scripts/fetch-etcd-protos.sh extracts them at
# configure time from Debian's golang-etcd-server-dev package into the build tree, and protoc
# plus grpc_cpp_plugin compile them here once.

set(ETCD_PROTO_DIR ${CMAKE_BINARY_DIR}/etcd-proto)
execute_process(
  COMMAND bash ${CMAKE_SOURCE_DIR}/scripts/fetch-etcd-protos.sh ${ETCD_PROTO_DIR}
  RESULT_VARIABLE _etcd_proto_result)
if(NOT _etcd_proto_result EQUAL 0)
  message(FATAL_ERROR "could not obtain etcd's .proto files (scripts/fetch-etcd-protos.sh)")
endif()
file(READ ${ETCD_PROTO_DIR}/.version ETCD_PROTO_VERSION)
string(STRIP "${ETCD_PROTO_VERSION}" ETCD_PROTO_VERSION)
message(STATUS "etcd .proto files from golang-etcd-server-dev ${ETCD_PROTO_VERSION}")

find_program(GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
set(_etcd_protos
  etcd/mvcc/mvccpb/kv
  etcd/auth/authpb/auth
  etcd/etcdserver/etcdserverpb/rpc
  etcd/etcdserver/api/v3election/v3electionpb/v3election)
set(_etcd_proto_out ${CMAKE_BINARY_DIR}/etcd-proto-gen)
set(_etcd_proto_sources)
foreach(_proto IN LISTS _etcd_protos)
  set(_outputs
    ${_etcd_proto_out}/${_proto}.pb.cc ${_etcd_proto_out}/${_proto}.pb.h
    ${_etcd_proto_out}/${_proto}.grpc.pb.cc ${_etcd_proto_out}/${_proto}.grpc.pb.h)
  add_custom_command(
    OUTPUT ${_outputs}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${_etcd_proto_out}
    COMMAND protobuf::protoc -I${ETCD_PROTO_DIR} --cpp_out=${_etcd_proto_out}
            --grpc_out=${_etcd_proto_out} --plugin=protoc-gen-grpc=${GRPC_CPP_PLUGIN}
            ${ETCD_PROTO_DIR}/${_proto}.proto
    DEPENDS ${ETCD_PROTO_DIR}/${_proto}.proto
    COMMENT "protoc ${_proto}.proto"
    VERBATIM)
  list(APPEND _etcd_proto_sources ${_outputs})
endforeach()

add_library(etcd_proto STATIC ${_etcd_proto_sources})
# Generated code: the project's warning set does not apply, sanitizer flags do.
target_include_directories(etcd_proto SYSTEM PUBLIC ${_etcd_proto_out})
target_link_libraries(etcd_proto PUBLIC zk2etcd_compiler_settings gRPC::grpc++ protobuf::libprotobuf)
