// Conversions between the client's value types (etcd_client.h) and etcd's protobuf messages, and
// the mapping of gRPC statuses to Error. Internal to the gRPC client; exposed for its unit tests.
//
// All functions are pure and thread-safe. "Take" functions move strings out of the message.
#pragma once

#include <grpcpp/support/status.h>

#include "etcd/etcd_client.h"
#include "etcd/etcdserver/api/v3election/v3electionpb/v3election.pb.h"
#include "etcd/etcdserver/etcdserverpb/rpc.pb.h"
#include "etcd/mvcc/mvccpb/kv.pb.h"

namespace zk2etcd::etcd {

void ToProto(const RangeRequest& request, etcdserverpb::RangeRequest* proto);
// Moves the strings of `request` into `proto`.
void ToProto(TxnRequest&& request, etcdserverpb::TxnRequest* proto);
// The size of the protobuf encoding of `request` (what etcd compares with --max-request-bytes,
// less a few bytes of its own envelope). Copies the request: for tests and fakes.
size_t EncodedBytes(const TxnRequest& request);
void ToProto(const WatchRequest& request, int64_t start_revision,
             etcdserverpb::WatchCreateRequest* proto);
void ToProto(const LeaderKey& leader, v3electionpb::LeaderKey* proto);

KeyValue TakeKeyValue(mvccpb::KeyValue* proto);
RangeResponse TakeRangeResponse(etcdserverpb::RangeResponse* proto);
TxnResponse TakeTxnResponse(etcdserverpb::TxnResponse* proto);
// The events of a watch response; header_revision from its header.
WatchEvents TakeWatchEvents(etcdserverpb::WatchResponse* proto);
LeaderKey TakeLeaderKey(v3electionpb::LeaderKey* proto);

// Maps a failed gRPC status (from etcd or from gRPC itself) to an Error. The status text goes
// into the message only. `tls`: whether the channel uses TLS (only then can a connection failure
// be kTlsFailed).
Error ErrorFromStatus(const grpc::Status& status, bool tls = true);

// etcd rejected the auth token (expired, or etcd restarted / auth re-enabled): authenticate again
// and repeat the call. etcd did not apply the request.
bool IsInvalidTokenStatus(const grpc::Status& status);

// The request provably did not reach etcd's state machine, so even a write whose repetition is
// not harmless may be sent again: gRPC found no connection, or etcd refused the request up front
// (too many requests, rejected token).
bool IsNeverAppliedStatus(const grpc::Status& status);

// Maps a watch's cancel_reason text (etcd sends no code) to an Error.
Error ErrorFromWatchCancel(const std::string& reason);

}  // namespace zk2etcd::etcd
