#include "zk/preconnecting_client_factory.h"

#include <utility>
#include <variant>
#include <vector>

namespace zk2etcd::zk {

// Holds the first client's events until its owner's handlers are installed, then forwards.
class PreconnectingZkClientFactory::Forwarder {
 public:
  ZkEventHandlers Handlers(const std::shared_ptr<Forwarder>& self) {
    ZkEventHandlers handlers;
    handlers.on_watch = [self](const WatchEvent& event) { self->Deliver(event); };
    handlers.on_session = [self](const SessionEvent& event) { self->Deliver(event); };
    return handlers;
  }

  void Install(ZkEventHandlers handlers) {
    std::lock_guard lock(mutex_);
    target_ = std::move(handlers);
    installed_ = true;
    for (const auto& event : early_) std::visit([this](const auto& e) { ForwardLocked(e); }, event);
    early_.clear();
  }

  template <typename Event>
  void Deliver(const Event& event) {
    std::lock_guard lock(mutex_);
    if (installed_) {
      ForwardLocked(event);
    } else {
      early_.emplace_back(event);
    }
  }

 private:
  void ForwardLocked(const WatchEvent& event) {
    if (target_.on_watch) target_.on_watch(event);
  }
  void ForwardLocked(const SessionEvent& event) {
    if (target_.on_session) target_.on_session(event);
  }

  std::mutex mutex_;
  bool installed_ = false;
  ZkEventHandlers target_;
  std::vector<std::variant<WatchEvent, SessionEvent>> early_;
};

PreconnectingZkClientFactory::PreconnectingZkClientFactory(std::unique_ptr<ZkClientFactory> factory)
    : factory_(std::move(factory)) {}

PreconnectingZkClientFactory::~PreconnectingZkClientFactory() {
  // A first client never handed over is closed here; its handlers only queue.
  if (first_ && first_->ok()) (*first_).value()->Close();
}

void PreconnectingZkClientFactory::Preconnect() {
  std::lock_guard lock(mutex_);
  if (preconnected_) return;
  preconnected_ = true;
  forwarder_ = std::make_shared<Forwarder>();
  first_ = factory_->NewClient(forwarder_->Handlers(forwarder_));
}

ZkResult<std::unique_ptr<ZkClient>> PreconnectingZkClientFactory::NewClient(
    ZkEventHandlers handlers) {
  std::unique_lock lock(mutex_);
  if (!first_) {
    lock.unlock();
    return factory_->NewClient(std::move(handlers));
  }
  ZkResult<std::unique_ptr<ZkClient>> first = std::move(*first_);
  first_.reset();
  std::shared_ptr<Forwarder> forwarder = std::move(forwarder_);
  lock.unlock();
  if (first.ok()) forwarder->Install(std::move(handlers));
  return first;
}

ZkResult<std::unique_ptr<ZkClient>> PreconnectingZkClientFactory::NewClientOf(
    const std::string& server, ZkEventHandlers handlers) {
  return factory_->NewClientOf(server, std::move(handlers));
}

}  // namespace zk2etcd::zk
