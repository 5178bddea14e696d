// String helpers shared by the CLI, the configuration and the engine: comma lists and Go-style
// durations ("1h30m", "500ms", "0"), so that flags written for the Go zk2etcd parse the same way.
// All functions are pure and thread-safe.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace zk2etcd {

// Splits "a, b,,c" into {"a", "b", "c"}: entries are trimmed and empty entries dropped, so an
// empty or all-comma string yields an empty list.
std::vector<std::string> SplitCommaList(std::string_view text);
// {"a", "b"} as "a,b" (no spaces); empty for an empty list.
std::string JoinCommaList(const std::vector<std::string>& items);

std::string_view TrimWhitespace(std::string_view text);

// `text` in double quotes, for messages that name a value: "/registry".
std::string Quoted(std::string_view text);

// Parses a Go time.Duration string: an optional sign, then one or more decimal numbers each with
// a unit (ns, us, µs, ms, s, m, h); "0" alone is zero. Errors name the offending text.
Result<std::chrono::nanoseconds, std::string> ParseGoDuration(std::string_view text);

// Formats like Go's time.Duration.String(): "5m0s", "1.5s", "300ms", "0s".
std::string FormatGoDuration(std::chrono::nanoseconds duration);

// Percent-encodes everything but RFC 3986 unreserved characters (A-Z a-z 0-9 - _ . ~), as Dubbo
// does for the URLs it registers as ZooKeeper node names.
std::string UrlEncode(std::string_view text);

}  // namespace zk2etcd
