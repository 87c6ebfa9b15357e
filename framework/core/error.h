// kvlab error handling: three tiers (style.md 4.14).
//  (a) user/config/input errors: throw kvlab::Error with what, value and fix; only the CLI exits.
//  (b) invariants: KVLAB_CHECK(cond) << "context" — always on, throws with file:line.
//  (c) external calls (BLAS/LAPACK/HDF5/CUDA) are wrapped by their callers and throw Error.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace kvlab {

// Every error kvlab raises. The message is complete and user-facing.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
// Collects a message with operator<< and throws on destruction of the full expression.
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* cond) {
    os_ << file << ":" << line << ": check failed: " << cond;
  }
  template <class T>
  CheckFailure& operator<<(const T& v) {
    if (!has_note_) {
      os_ << ": ";
      has_note_ = true;
    }
    os_ << v;
    return *this;
  }
  [[noreturn]] ~CheckFailure() noexcept(false) { throw Error(os_.str()); }

 private:
  std::ostringstream os_;
  bool has_note_ = false;
};

// Builds an Error message with operator<< : throw kvlab::detail::Msg() << "x=" << x;
}  // namespace detail

// Formats arguments into one string: kvlab::str("rank ", r, " > head_dim ", d).
template <class... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

// Throws kvlab::Error with the concatenated arguments.
template <class... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(str(args...));
}

}  // namespace kvlab

// Always-on invariant check: KVLAB_CHECK(n > 0) << "n=" << n;
#define KVLAB_CHECK(cond) \
  if (cond) {             \
  } else                  \
    ::kvlab::detail::CheckFailure(__FILE__, __LINE__, #cond)
