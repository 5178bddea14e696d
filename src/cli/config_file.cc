#include "cli/config_file.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>

namespace zk2etcd::cli {

Result<std::vector<std::pair<std::string, std::string>>, std::string> LoadConfigFile(
    const std::string& path) {
  std::ifstream in(path);
  if (!in) return Unexpected{"--config \"" + path + "\": cannot read the file"};
  std::vector<std::pair<std::string, std::string>> values;
  try {
    const YAML::Node root = YAML::Load(in);
    if (root.IsNull()) return values;  // an empty file sets nothing
    if (!root.IsMap()) return Unexpected{"--config \"" + path + "\": expected key: value pairs"};
    std::set<std::string> seen;
    for (const auto& entry : root) {
      const std::string key = entry.first.as<std::string>();
      if (!seen.insert(key).second) {
        // A second value would silently win over the first: which one was meant is unknown.
        return Unexpected{"--config \"" + path + "\": \"" + key + "\" is set twice"};
      }
      const YAML::Node& value = entry.second;
      std::string text;
      if (value.IsScalar()) {
        text = value.as<std::string>();
      } else if (value.IsSequence()) {
        for (const auto& item : value) {
          if (!item.IsScalar()) {
            return Unexpected{"--config \"" + path + "\": \"" + key +
                              "\" must be a value or a list of values"};
          }
          text += (text.empty() ? "" : ",") + item.as<std::string>();
        }
      } else if (!value.IsNull()) {
        return Unexpected{"--config \"" + path + "\": \"" + key +
                          "\" must be a value or a list of values"};
      }
      values.emplace_back(key, std::move(text));
    }
  } catch (const YAML::Exception& error) {
    return Unexpected{"--config \"" + path + "\": " + error.what()};
  }
  return values;
}

}  // namespace zk2etcd::cli
