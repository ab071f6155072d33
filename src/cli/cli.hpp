#pragma once
// The `geoloc` program's sub-command registry and a small option parser shared by the commands.
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "geoloc/error.hpp"

namespace geoloc::cli {

struct Command {
  std::string name;
  std::string summary;
  std::function<int(int argc, char** argv)> run;  // argv[0] is the command name
};

std::vector<Command>& registry();

struct Registrar {
  Registrar(std::string name, std::string summary, std::function<int(int, char**)> run) {
    registry().push_back({std::move(name), std::move(summary), std::move(run)});
  }
};

/// Parses `--key value`, `--key=value` and `--flag`. Unknown options are an error that names them.
class Args {
 public:
  struct Spec {
    std::string name;      // without the leading dashes
    std::string help;
    bool flag = false;     // takes no value
    std::string fallback;  // default value shown in --help ("" = none)
  };
  Args(std::string command, std::string usage, std::vector<Spec> specs)
      : command_(std::move(command)), usage_(std::move(usage)), specs_(std::move(specs)) {
    specs_.push_back({"help", "show this help", true, ""});
  }

  /// Returns false when --help was given (help has been printed).
  bool parse(int argc, char** argv);
  void print_help() const;

  bool has(const std::string& key) const { return values_.count(key) > 0; }
  std::string get(const std::string& key) const;  // value or the spec's fallback; Error if neither
  std::string get(const std::string& key, const std::string& fallback) const {
    auto it = values_.find(key);
    return it == values_.end() ? fallback : it->second;
  }
  long get_int(const std::string& key) const;
  long get_int(const std::string& key, long fallback) const { return has(key) ? get_int(key) : fallback; }
  double get_double(const std::string& key) const;
  double get_double(const std::string& key, double fallback) const { return has(key) ? get_double(key) : fallback; }
  bool flag(const std::string& key) const { return has(key); }
  const std::vector<std::string>& positional() const { return positional_; }

  /// Splits "a,b,c" into its parts.
  static std::vector<std::string> split(const std::string& s, char sep = ',');

 private:
  const Spec* find(const std::string& name) const;
  std::string command_, usage_;
  std::vector<Spec> specs_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

/// IoError unless the folder that will hold `path` exists and is writable: checked before the work,
/// so that a long run does not end in an unwritable output (or, with several outputs, only some written).
void check_output_path(const std::string& path);

}  // namespace geoloc::cli

#define GEOLOC_CLI_CAT2(a, b) a##b
#define GEOLOC_CLI_CAT(a, b) GEOLOC_CLI_CAT2(a, b)
/// Registers a sub-command: GEOLOC_COMMAND("partition", "build S2 partitionings", run_partition);
#define GEOLOC_COMMAND(name, summary, fn) \
  static ::geoloc::cli::Registrar GEOLOC_CLI_CAT(geoloc_command_, __LINE__)(name, summary, fn)
