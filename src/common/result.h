// Result<T, E>: a value or an error, returned across module boundaries instead of throwing.
//
// E is a module's own error type (a small enum plus a message, see zk/ and etcd/), so callers
// switch on error classes and metrics never see free text. Result<void, E> carries only success
// or an error. Not thread-safe; a plain value type.
#pragma once

#include <cassert>
#include <type_traits>
#include <utility>
#include <variant>

namespace zk2etcd {

// Wraps an error so that Result's constructor can tell it from a value of the same type.
template <typename E>
struct Unexpected {
  E error;
};
template <typename E>
Unexpected(E) -> Unexpected<E>;

template <typename T, typename E>
class [[nodiscard]] Result {
 public:
  Result(T value) : storage_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit
  Result(Unexpected<E> error)                                             // NOLINT: implicit
      : storage_(std::in_place_index<1>, std::move(error.error)) {}

  bool ok() const { return storage_.index() == 0; }
  explicit operator bool() const { return ok(); }

  // REQUIRES: ok()
  T& value() & {
    assert(ok());
    return std::get<0>(storage_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(storage_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(storage_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  // REQUIRES: !ok()
  const E& error() const& {
    assert(!ok());
    return std::get<1>(storage_);
  }
  E&& error() && {
    assert(!ok());
    return std::get<1>(std::move(storage_));
  }

 private:
  std::variant<T, E> storage_;
};

template <typename E>
class [[nodiscard]] Result<void, E> {
 public:
  Result() = default;
  Result(Unexpected<E> error) : error_(std::move(error.error)), ok_(false) {}  // NOLINT: implicit

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  // REQUIRES: !ok()
  const E& error() const& {
    assert(!ok_);
    return error_;
  }

 private:
  E error_{};
  bool ok_ = true;
};

}  // namespace zk2etcd
