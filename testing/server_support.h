// Pieces shared by the server fixtures: waiting for readiness with a clear error, and the macro
// that turns a fixture failure into a test failure (or a skip, outside CI, when the server is not
// installed). Thread-safe.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>

#include "testing/process.h"

namespace zk2etcd::testing {

// Polls `ready` until it returns true. Fails, with the tail of the server's log, when the process
// exits first or `timeout` passes.
FixtureResult<void> WaitUntilReady(ChildProcess& process, const std::string& what,
                                   const std::string& log_path,
                                   const std::function<bool()>& ready,
                                   std::chrono::milliseconds timeout);

}  // namespace zk2etcd::testing

#define ZK2ETCD_FIXTURE_CONCAT_INNER(a, b) a##b
#define ZK2ETCD_FIXTURE_CONCAT(a, b) ZK2ETCD_FIXTURE_CONCAT_INNER(a, b)

// Evaluates `expr` (a FixtureResult<T>) and moves its value into `lhs`; on failure fails the
// test, or skips it outside CI when the server program is missing. Use in a test body or in a
// void SetUp().
#define ASSERT_FIXTURE_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_FIXTURE_OK_AND_ASSIGN_IMPL(ZK2ETCD_FIXTURE_CONCAT(fixture_result_, __LINE__), lhs, expr)
#define ASSERT_FIXTURE_OK_AND_ASSIGN_IMPL(result, lhs, expr)                   \
  auto result = (expr);                                                         \
  if (!result.ok()) {                                                           \
    if (result.error().missing_program && !::zk2etcd::testing::InCi()) {        \
      GTEST_SKIP() << result.error().message;                                   \
    }                                                                           \
    FAIL() << result.error().message;                                           \
  }                                                                             \
  lhs = std::move(result).value()

// Same for a FixtureResult<void>.
#define ASSERT_FIXTURE_OK(expr)                                          \
  do {                                                                   \
    auto fixture_status = (expr);                                        \
    if (!fixture_status.ok()) FAIL() << fixture_status.error().message; \
  } while (false)
