#include "cli/cli.h"

int main(int argc, char** argv) { return zk2etcd::cli::Main(argc, argv); }
