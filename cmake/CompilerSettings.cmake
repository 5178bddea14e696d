# INTERFACE targets linked by every project target:
#   zk2etcd_compiler_settings  language level, sanitizers, position-independence
#   zk2etcd_warnings           the warning set (errors when ZK2ETCD_WERROR is on)
# Generated code (protobuf stubs) links only zk2etcd_compiler_settings.

if(ZK2ETCD_ASAN_UBSAN AND ZK2ETCD_TSAN)
  message(FATAL_ERROR "ZK2ETCD_ASAN_UBSAN and ZK2ETCD_TSAN cannot be combined")
endif()

add_library(zk2etcd_compiler_settings INTERFACE)
target_compile_features(zk2etcd_compiler_settings INTERFACE cxx_std_20)
if(ZK2ETCD_ASAN_UBSAN)
  set(_zk2etcd_sanitize -fsanitize=address,undefined -fno-sanitize-recover=undefined
      -fno-omit-frame-pointer)
  target_compile_options(zk2etcd_compiler_settings INTERFACE ${_zk2etcd_sanitize})
  target_link_options(zk2etcd_compiler_settings INTERFACE ${_zk2etcd_sanitize})
endif()
if(ZK2ETCD_TSAN)
  # -Wno-tsan: g++ 12 warns that asio's atomic_thread_fence is not instrumented.
  target_compile_options(zk2etcd_compiler_settings INTERFACE -fsanitize=thread
                         -fno-omit-frame-pointer -Wno-tsan)
  target_link_options(zk2etcd_compiler_settings INTERFACE -fsanitize=thread)
endif()

add_library(zk2etcd_warnings INTERFACE)
target_compile_options(zk2etcd_warnings INTERFACE
  -Wall -Wextra -Wpedantic $<$<CXX_COMPILER_ID:GNU>:-Wshadow=local> -Wnon-virtual-dtor
  -Wold-style-cast -Wcast-align
  -Woverloaded-virtual -Wnull-dereference -Wformat=2 -Wimplicit-fallthrough)
if(ZK2ETCD_WERROR)
  target_compile_options(zk2etcd_warnings INTERFACE -Werror)
endif()
