// PreconnectingZkClientFactory over FakeZkServer sessions with manual delivery, so that the test
// decides when the first client's events are delivered: before or after its handover.
#include "zk/preconnecting_client_factory.h"

#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "zk/event_recorder_for_test.h"
#include "zk/fake_zk_client.h"

namespace zk2etcd::zk {
namespace {

// Makes manual-delivery fake sessions and remembers them.
class RecordingFactory : public ZkClientFactory {
 public:
  explicit RecordingFactory(std::shared_ptr<FakeZkServer> server) : server_(std::move(server)) {}
  ZkResult<std::unique_ptr<ZkClient>> NewClient(ZkEventHandlers handlers) override {
    FakeZkClientOptions options;
    options.manual_delivery = true;
    std::unique_ptr<FakeZkClient> client = server_->NewClient(std::move(handlers), options);
    made_->push_back(client.get());
    return std::unique_ptr<ZkClient>(std::move(client));
  }
  std::shared_ptr<std::vector<FakeZkClient*>> made() const { return made_; }

 private:
  std::shared_ptr<FakeZkServer> server_;
  std::shared_ptr<std::vector<FakeZkClient*>> made_ =
      std::make_shared<std::vector<FakeZkClient*>>();
};

using Recorder = testing::EventRecorder;

class PreconnectingZkClientFactoryTest : public ::testing::Test {
 protected:
  PreconnectingZkClientFactoryTest() {
    auto recording = std::make_unique<RecordingFactory>(server_);
    made_ = recording->made();
    factory_.emplace(std::move(recording));
  }

  // Registers a persistent recursive watch on "/" through `client` and creates `path`.
  void WatchAndCreate(ZkClient& client, FakeZkClient& fake, const std::string& path) {
    std::optional<ZkResult<Ack>> added;
    client.AddWatch("/", AddWatchMode::kPersistentRecursive,
                    [&](ZkResult<Ack> result) { added.emplace(std::move(result)); });
    fake.RunPending();
    ASSERT_TRUE(added && added->ok());
    ASSERT_TRUE(server_->CreateNode(path, "x").ok());
    fake.RunPending();
  }

  std::shared_ptr<FakeZkServer> server_ = FakeZkServer::Create();
  std::shared_ptr<std::vector<FakeZkClient*>> made_;
  std::optional<PreconnectingZkClientFactory> factory_;
};

TEST_F(PreconnectingZkClientFactoryTest, TheFirstClientIsMadeAtPreconnectAndKeepsItsEarlyEvents) {
  factory_->Preconnect();
  factory_->Preconnect();  // once only
  ASSERT_EQ(made_->size(), 1u);
  (*made_)[0]->RunPending();  // kConnected, delivered before anyone holds the client

  Recorder recorder;
  auto client = factory_->NewClient(recorder.Handlers());
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(client->get(), (*made_)[0]);
  ASSERT_EQ(recorder.sessions().size(), 1u);
  EXPECT_EQ(recorder.sessions()[0].type, SessionEventType::kConnected);

  WatchAndCreate(**client, *(*made_)[0], "/a");
  ASSERT_EQ(recorder.watches().size(), 1u);
  EXPECT_EQ(recorder.watches()[0].type, WatchEventType::kNodeCreated);
  EXPECT_EQ(recorder.watches()[0].path, "/a");
}

TEST_F(PreconnectingZkClientFactoryTest, EventsAfterTheHandoverGoStraightToTheHandlers) {
  factory_->Preconnect();
  Recorder recorder;
  auto client = factory_->NewClient(recorder.Handlers());
  ASSERT_TRUE(client.ok());
  EXPECT_TRUE(recorder.sessions().empty());
  (*made_)[0]->RunPending();
  ASSERT_EQ(recorder.sessions().size(), 1u);
  EXPECT_EQ(recorder.sessions()[0].type, SessionEventType::kConnected);
}

TEST_F(PreconnectingZkClientFactoryTest, LaterClientsAreNewSessions) {
  factory_->Preconnect();
  Recorder first, second;
  auto a = factory_->NewClient(first.Handlers());
  auto b = factory_->NewClient(second.Handlers());
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(made_->size(), 2u);
  EXPECT_EQ(b->get(), (*made_)[1]);
  (*made_)[1]->RunPending();
  EXPECT_TRUE(first.sessions().empty());
  ASSERT_EQ(second.sessions().size(), 1u);
  WatchAndCreate(**b, *(*made_)[1], "/b");
  EXPECT_TRUE(first.watches().empty());
  EXPECT_EQ(second.watches().size(), 1u);
}

TEST_F(PreconnectingZkClientFactoryTest, WithoutPreconnectItIsTheWrappedFactory) {
  Recorder recorder;
  EXPECT_TRUE(made_->empty());
  auto client = factory_->NewClient(recorder.Handlers());
  ASSERT_TRUE(client.ok());
  ASSERT_EQ(made_->size(), 1u);
  (*made_)[0]->RunPending();
  EXPECT_EQ(recorder.sessions().size(), 1u);
}

TEST_F(PreconnectingZkClientFactoryTest, AClientNeverHandedOverIsClosedWithTheFactory) {
  factory_->Preconnect();
  FakeZkClient& early = *(*made_)[0];
  std::optional<ZkResult<CreateReply>> created;
  early.Create("/ephemeral", "", CreateMode::kEphemeral, OpenAclUnsafe(),
               [&](ZkResult<CreateReply> result) { created.emplace(std::move(result)); });
  early.RunPending();
  ASSERT_TRUE(created && created->ok());
  ASSERT_TRUE(server_->GetNode("/ephemeral").has_value());
  factory_.reset();
  EXPECT_FALSE(server_->GetNode("/ephemeral").has_value());  // the session ended
}

// A factory that cannot make a client (an unusable connect string, say).
class FailingFactory : public ZkClientFactory {
 public:
  ZkResult<std::unique_ptr<ZkClient>> NewClient(ZkEventHandlers /*handlers*/) override {
    ++calls;
    return Unexpected{ZkError{ZkErrorCode::kInvalidArgument, "no usable server (test)"}};
  }
  int calls = 0;
};

TEST(PreconnectingZkClientFactoryFailureTest, AFailedPreconnectIsTheFirstClientsError) {
  auto failing = std::make_unique<FailingFactory>();
  FailingFactory& inner = *failing;
  PreconnectingZkClientFactory factory(std::move(failing));
  factory.Preconnect();
  EXPECT_EQ(inner.calls, 1);
  Recorder recorder;
  auto first = factory.NewClient(recorder.Handlers());
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.error().code, ZkErrorCode::kInvalidArgument);
  EXPECT_EQ(inner.calls, 1);  // the error kept from Preconnect, not a second attempt
  auto second = factory.NewClient(recorder.Handlers());
  EXPECT_FALSE(second.ok());
  EXPECT_EQ(inner.calls, 2);  // later clients are asked of the wrapped factory again
}

}  // namespace
}  // namespace zk2etcd::zk
