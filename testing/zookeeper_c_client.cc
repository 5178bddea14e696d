#include "testing/zookeeper_c_client.h"

#include <zookeeper/zookeeper.h>

#include <condition_variable>
#include <mutex>

namespace zk2etcd::testing {

struct ZooKeeperCClient::SessionState {
  std::mutex mutex;
  std::condition_variable changed;
  int state = 0;
};

namespace {

void OnSessionEvent(zhandle_t* /*handle*/, int type, int state, const char* /*path*/,
                    void* context) {
  if (type != ZOO_SESSION_EVENT || context == nullptr) return;
  auto* wait = static_cast<ZooKeeperCClient::SessionState*>(context);
  std::lock_guard lock(wait->mutex);
  wait->state = state;
  wait->changed.notify_all();
}

FixtureError CError(const std::string& what, const std::string& path, int rc) {
  return FixtureError{"ZooKeeper C client: " + what + " " + path + ": " + zerror(rc)};
}

}  // namespace

ZooKeeperCClient::ZooKeeperCClient(zhandle_t* handle, std::unique_ptr<SessionState> state)
    : handle_(handle), state_(std::move(state)) {}

FixtureResult<std::unique_ptr<ZooKeeperCClient>> ZooKeeperCClient::Connect(
    const std::string& connect_string, std::chrono::milliseconds session_timeout) {
  zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
  auto state = std::make_unique<SessionState>();
  SessionState* wait = state.get();
  zhandle_t* handle = zookeeper_init(connect_string.c_str(), OnSessionEvent,
                                     static_cast<int>(session_timeout.count()), nullptr, wait, 0);
  if (handle == nullptr) {
    return Unexpected{FixtureError{"zookeeper_init failed for " + connect_string}};
  }
  std::unique_lock lock(wait->mutex);
  if (!wait->changed.wait_for(lock, session_timeout,
                              [wait] { return wait->state == ZOO_CONNECTED_STATE; })) {
    lock.unlock();
    zookeeper_close(handle);
    return Unexpected{FixtureError{"ZooKeeper C client: no session with " + connect_string}};
  }
  lock.unlock();
  return std::unique_ptr<ZooKeeperCClient>(new ZooKeeperCClient(handle, std::move(state)));
}

ZooKeeperCClient::~ZooKeeperCClient() { zookeeper_close(handle_); }

int64_t ZooKeeperCClient::session_id() const { return zoo_client_id(handle_)->client_id; }

FixtureResult<void> ZooKeeperCClient::AddDigestAuth(const std::string& user,
                                                    const std::string& password) {
  struct AuthWait {
    std::mutex mutex;
    std::condition_variable done;
    std::optional<int> rc;
  } wait;
  const std::string credentials = user + ":" + password;
  const int rc = zoo_add_auth(
      handle_, "digest", credentials.data(), static_cast<int>(credentials.size()),
      [](int result, const void* data) {
        auto* w = static_cast<AuthWait*>(const_cast<void*>(data));
        std::lock_guard lock(w->mutex);
        w->rc = result;
        w->done.notify_all();
      },
      &wait);
  if (rc != ZOK) return Unexpected{CError("add_auth", user, rc)};
  std::unique_lock lock(wait.mutex);
  if (!wait.done.wait_for(lock, std::chrono::seconds(10), [&] { return wait.rc.has_value(); })) {
    return Unexpected{FixtureError{"ZooKeeper C client: add_auth timed out"}};
  }
  if (*wait.rc != ZOK) return Unexpected{CError("add_auth", user, *wait.rc)};
  return {};
}

FixtureResult<void> ZooKeeperCClient::CreateWithAcl(const std::string& path,
                                                    const std::string& data, int flags,
                                                    bool creator_only) {
  const int rc = zoo_create(handle_, path.c_str(), data.data(), static_cast<int>(data.size()),
                            creator_only ? &ZOO_CREATOR_ALL_ACL : &ZOO_OPEN_ACL_UNSAFE, flags,
                            nullptr, 0);
  if (rc != ZOK) return Unexpected{CError("create", path, rc)};
  return {};
}

FixtureResult<void> ZooKeeperCClient::Create(const std::string& path, const std::string& data,
                                             bool ephemeral) {
  return CreateWithAcl(path, data, ephemeral ? ZOO_EPHEMERAL : ZOO_PERSISTENT, false);
}

FixtureResult<void> ZooKeeperCClient::CreateCreatorOnly(const std::string& path,
                                                        const std::string& data) {
  return CreateWithAcl(path, data, ZOO_PERSISTENT, true);
}

FixtureResult<void> ZooKeeperCClient::CreateRecursive(const std::string& path,
                                                      const std::string& data) {
  for (size_t slash = path.find('/', 1); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    const std::string parent = path.substr(0, slash);
    const int rc = zoo_create(handle_, parent.c_str(), nullptr, -1, &ZOO_OPEN_ACL_UNSAFE,
                              ZOO_PERSISTENT, nullptr, 0);
    if (rc != ZOK && rc != ZNODEEXISTS) return Unexpected{CError("create", parent, rc)};
  }
  const int rc = zoo_create(handle_, path.c_str(), data.data(), static_cast<int>(data.size()),
                            &ZOO_OPEN_ACL_UNSAFE, ZOO_PERSISTENT, nullptr, 0);
  if (rc != ZOK && rc != ZNODEEXISTS) return Unexpected{CError("create", path, rc)};
  return {};
}

FixtureResult<std::optional<std::string>> ZooKeeperCClient::Get(const std::string& path) {
  std::string buffer(1 << 20, '\0');
  int length = static_cast<int>(buffer.size());
  const int rc = zoo_get(handle_, path.c_str(), 0, buffer.data(), &length, nullptr);
  if (rc == ZNONODE) return std::optional<std::string>();
  if (rc != ZOK) return Unexpected{CError("get", path, rc)};
  buffer.resize(length < 0 ? 0 : static_cast<size_t>(length));
  return std::optional<std::string>(std::move(buffer));
}

FixtureResult<void> ZooKeeperCClient::Set(const std::string& path, const std::string& data) {
  const int rc =
      zoo_set(handle_, path.c_str(), data.data(), static_cast<int>(data.size()), -1);
  if (rc != ZOK) return Unexpected{CError("set", path, rc)};
  return {};
}

FixtureResult<void> ZooKeeperCClient::Delete(const std::string& path) {
  const int rc = zoo_delete(handle_, path.c_str(), -1);
  if (rc != ZOK && rc != ZNONODE) return Unexpected{CError("delete", path, rc)};
  return {};
}

FixtureResult<std::vector<std::string>> ZooKeeperCClient::Children(const std::string& path) {
  String_vector children{};
  const int rc = zoo_get_children(handle_, path.c_str(), 0, &children);
  if (rc != ZOK) return Unexpected{CError("get_children", path, rc)};
  std::vector<std::string> names(children.data, children.data + children.count);
  deallocate_String_vector(&children);
  return names;
}

}  // namespace zk2etcd::testing
