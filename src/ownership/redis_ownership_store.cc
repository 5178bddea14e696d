#include "ownership/redis_ownership_store.h"

#include <hiredis/hiredis.h>

#include <charconv>

namespace zk2etcd::ownership {

namespace {

using ReplyPtr = std::unique_ptr<redisReply, decltype(&freeReplyObject)>;

Unexpected<OwnershipError> Fail(OwnershipErrorCode code, std::string message) {
  return Unexpected{OwnershipError{code, std::move(message)}};
}

timeval ToTimeval(std::chrono::milliseconds timeout) {
  return timeval{static_cast<time_t>(timeout.count() / 1000),
                 static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
}

std::string ReplyText(const redisReply* reply) {
  return reply->str != nullptr ? std::string(reply->str, reply->len) : std::string();
}

}  // namespace

std::string_view OwnershipErrorLabel(OwnershipErrorCode code) {
  switch (code) {
    case OwnershipErrorCode::kUnavailable: return "unavailable";
    case OwnershipErrorCode::kAuthFailed: return "auth_failed";
    case OwnershipErrorCode::kInternal: return "internal";
  }
  return "internal";
}

Result<std::unique_ptr<RedisOwnershipStore>, std::string> RedisOwnershipStore::Create(
    RedisOptions options) {
  const size_t colon = options.address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0) {
    return Unexpected{"--redis-server \"" + options.address + "\" must be host:port"};
  }
  const std::string port_text = options.address.substr(colon + 1);
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port <= 0 ||
      port > 65535) {
    return Unexpected{"--redis-server \"" + options.address + "\" has an invalid port"};
  }
  std::string host = options.address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (options.batch_size == 0) options.batch_size = 1;
  return std::unique_ptr<RedisOwnershipStore>(
      new RedisOwnershipStore(std::move(options), std::move(host), port));
}

RedisOwnershipStore::RedisOwnershipStore(RedisOptions options, std::string host, int port)
    : options_(std::move(options)), host_(std::move(host)), port_(port) {}

RedisOwnershipStore::~RedisOwnershipStore() { Disconnect(); }

void RedisOwnershipStore::Disconnect() {
  if (context_ != nullptr) {
    redisFree(context_);
    context_ = nullptr;
  }
}

OwnershipResult<void> RedisOwnershipStore::EnsureConnected() {
  if (context_ != nullptr) return {};
  context_ = redisConnectWithTimeout(host_.c_str(), port_, ToTimeval(options_.timeout));
  if (context_ == nullptr) {
    return Fail(OwnershipErrorCode::kUnavailable, "redis " + options_.address + ": out of memory");
  }
  if (context_->err != 0) {
    std::string message = "redis " + options_.address + ": " + context_->errstr;
    Disconnect();
    return Fail(OwnershipErrorCode::kUnavailable, std::move(message));
  }
  redisSetTimeout(context_, ToTimeval(options_.timeout));
  if (!options_.password.empty()) {
    std::vector<const char*> argv = {"AUTH"};
    std::vector<size_t> lengths = {4};
    if (!options_.username.empty()) {
      argv.push_back(options_.username.data());
      lengths.push_back(options_.username.size());
    }
    argv.push_back(options_.password.data());
    lengths.push_back(options_.password.size());
    ReplyPtr reply(static_cast<redisReply*>(redisCommandArgv(
                       context_, static_cast<int>(argv.size()), argv.data(), lengths.data())),
                   &freeReplyObject);
    if (!reply) {
      std::string message = "redis " + options_.address + ": " + context_->errstr;
      Disconnect();
      return Fail(OwnershipErrorCode::kUnavailable, std::move(message));
    }
    if (reply->type == REDIS_REPLY_ERROR) {
      // The password itself never appears in the message.
      std::string message = "redis " + options_.address + " refused the credentials: " +
                            ReplyText(reply.get());
      Disconnect();
      return Fail(OwnershipErrorCode::kAuthFailed, std::move(message));
    }
  }
  return {};
}

template <typename OnReply>
OwnershipResult<void> RedisOwnershipStore::Pipeline(
    const std::vector<std::vector<std::string>>& commands, OnReply on_reply) {
  for (size_t start = 0; start < commands.size(); start += options_.batch_size) {
    if (auto connected = EnsureConnected(); !connected.ok()) return connected;
    const size_t end = std::min(commands.size(), start + options_.batch_size);
    for (size_t i = start; i < end; ++i) {
      std::vector<const char*> argv;
      std::vector<size_t> lengths;
      for (const std::string& arg : commands[i]) {
        argv.push_back(arg.data());
        lengths.push_back(arg.size());
      }
      if (redisAppendCommandArgv(context_, static_cast<int>(argv.size()), argv.data(),
                                 lengths.data()) != REDIS_OK) {
        std::string message = "redis " + options_.address + ": " + context_->errstr;
        Disconnect();
        return Fail(OwnershipErrorCode::kUnavailable, std::move(message));
      }
    }
    for (size_t i = start; i < end; ++i) {
      void* raw = nullptr;
      if (redisGetReply(context_, &raw) != REDIS_OK || raw == nullptr) {
        std::string message = "redis " + options_.address + ": " +
                              (context_->err != 0 ? context_->errstr : "no reply");
        Disconnect();  // replies still pending would be read by the wrong caller
        return Fail(OwnershipErrorCode::kUnavailable, std::move(message));
      }
      ReplyPtr reply(static_cast<redisReply*>(raw), &freeReplyObject);
      if (reply->type == REDIS_REPLY_ERROR) {
        const std::string text = ReplyText(reply.get());
        const bool auth = text.starts_with("NOAUTH") || text.starts_with("WRONGPASS") ||
                          text.starts_with("NOPERM");
        Disconnect();
        return Fail(auth ? OwnershipErrorCode::kAuthFailed : OwnershipErrorCode::kInternal,
                    "redis " + options_.address + ": " + text);
      }
      on_reply(i, *reply);
    }
  }
  return {};
}

OwnershipResult<std::vector<bool>> RedisOwnershipStore::Lookup(
    const std::vector<std::string>& keys) {
  std::vector<std::vector<std::string>> commands;
  commands.reserve(keys.size());
  for (const std::string& key : keys) commands.push_back({"EXISTS", key});
  std::vector<bool> owned(keys.size(), false);
  std::lock_guard lock(mutex_);
  auto done = Pipeline(commands, [&](size_t i, const redisReply& reply) {
    owned[i] = reply.type == REDIS_REPLY_INTEGER && reply.integer > 0;
  });
  if (!done.ok()) return Unexpected{done.error()};
  return owned;
}

OwnershipResult<void> RedisOwnershipStore::Record(
    const std::vector<std::pair<std::string, std::string>>& key_values) {
  std::vector<std::vector<std::string>> commands;
  commands.reserve(key_values.size());
  for (const auto& [key, value] : key_values) commands.push_back({"SET", key, value});
  std::lock_guard lock(mutex_);
  return Pipeline(commands, [](size_t, const redisReply&) {});
}

OwnershipResult<void> RedisOwnershipStore::Forget(const std::vector<std::string>& keys) {
  std::vector<std::vector<std::string>> commands;
  commands.reserve(keys.size());
  for (const std::string& key : keys) commands.push_back({"DEL", key});
  std::lock_guard lock(mutex_);
  return Pipeline(commands, [](size_t, const redisReply&) {});
}

OwnershipResult<void> RedisOwnershipStore::Ping() {
  std::lock_guard lock(mutex_);
  return Pipeline({{"PING"}}, [](size_t, const redisReply&) {});
}

}  // namespace zk2etcd::ownership
