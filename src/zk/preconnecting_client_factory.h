// PreconnectingZkClientFactory: a ZkClientFactory whose first client starts connecting before
// anyone asks for it, so that a process opens its ZooKeeper session while it connects to
// something else (zk2etcd sync: while etcd is dialled).
//
// Preconnect() creates the first client through the wrapped factory, with handlers of its own.
// The first NewClient() hands that client over and installs the caller's handlers: the events it
// delivered before (session events; a client has no watch before its owner registers one) reach
// them first, in their order, then every later event. Any later NewClient() (after a session
// expired) makes a new client through the wrapped factory. Without Preconnect() it is the
// wrapped factory.
//
// Handlers of the first client are called with an internal mutex held, which also orders the
// early events before the live ones; they must not wait for another event of the same client.
// Thread-safe.
#pragma once

#include <memory>
#include <mutex>
#include <optional>

#include "zk/zk_client.h"

namespace zk2etcd::zk {

class PreconnectingZkClientFactory : public ZkClientFactory {
 public:
  explicit PreconnectingZkClientFactory(std::unique_ptr<ZkClientFactory> factory);
  ~PreconnectingZkClientFactory() override;

  // Creates the first client now (once; later calls do nothing). A failure to create it is
  // returned by the first NewClient().
  void Preconnect();

  ZkResult<std::unique_ptr<ZkClient>> NewClient(ZkEventHandlers handlers) override;
  // The wrapped factory's.
  ZkResult<std::unique_ptr<ZkClient>> NewClientOf(const std::string& server,
                                                  ZkEventHandlers handlers) override;

 private:
  class Forwarder;

  std::unique_ptr<ZkClientFactory> factory_;
  std::mutex mutex_;
  bool preconnected_ = false;
  std::shared_ptr<Forwarder> forwarder_;                      // the first client's handlers
  std::optional<ZkResult<std::unique_ptr<ZkClient>>> first_;  // until handed over
};

}  // namespace zk2etcd::zk
