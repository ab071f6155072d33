#pragma once
// The `geoloc` program's sub-command registry and a small option parser shared by the commands.
#include <cstdlib>
#include <utility>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "geoloc/error.hpp"
#include "geoloc/tensor.hpp"

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

/// Parses `--key value`, `--key=value` and `--flag`, strictly: an unknown option, an option given
/// twice, a single-dash option (`-steps`: "did you mean --steps?"), an option whose value is missing
/// (`--out --steps 5`) and, unless the command takes them, a positional argument are errors. `--`
/// ends the options (a file named `-x.jpg` goes after it). `-h` is `--help`.
class Args {
 public:
  struct Spec {
    std::string name;      // without the leading dashes
    std::string help;
    bool flag = false;     // takes no value
    std::string fallback;  // default value shown in --help ("" = none)
  };
  /// `positional`: what the command's positional arguments are ("IMAGE", for predict), or "" when it
  /// takes none.
  Args(std::string command, std::string usage, std::vector<Spec> specs, std::string positional = "")
      : command_(std::move(command)), usage_(std::move(usage)), specs_(std::move(specs)),
        positional_name_(std::move(positional)) {
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
  /// The option as a whole decimal integer in [lo, hi]; ValueError quoting the value as given
  /// otherwise ("12x", "1e3", "99999999999" for an int, "-1" for a count).
  long long get_int(const std::string& key, long long lo, long long hi) const;
  long long get_int(const std::string& key, long long lo, long long hi, long long fallback) const {
    return has(key) ? get_int(key, lo, hi) : fallback;
  }
  /// The option as a finite number in [lo, hi] (inf and nan are refused); ValueError quoting it.
  double get_double(const std::string& key, double lo, double hi) const;
  double get_double(const std::string& key, double lo, double hi, double fallback) const {
    return has(key) ? get_double(key, lo, hi) : fallback;
  }
  bool flag(const std::string& key) const { return has(key); }
  const std::vector<std::string>& positional() const { return positional_; }

  /// Splits "a,b,c" into its parts.
  static std::vector<std::string> split(const std::string& s, char sep = ',');

 private:
  const Spec* find(const std::string& name) const;
  std::string command_, usage_;
  std::vector<Spec> specs_;
  std::string positional_name_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

/// A whole decimal integer in [lo, hi] ("what" names it in the message, e.g. "option --max"), or a
/// ValueError that quotes `text` as given.
long long parse_int(const std::string& text, long long lo, long long hi, const std::string& what);
/// A finite number in [lo, hi], or a ValueError that quotes `text` as given.
double parse_double(const std::string& text, double lo, double hi, const std::string& what);

/// IoError unless `path` can be written: the folder that will hold it exists and is writable, and the
/// path is not a folder or another kind of non-regular file. Outputs::file does this and more.
void check_output_path(const std::string& path);

/// --device: parsed, and a CUDA device is opened now (a missing or unusable GPU fails before the work,
/// not after minutes of decoding).
Device usable_device(const std::string& name);

/// Flushes standard output; IoError when anything written to it was lost (a full disk, a closed pipe).
void check_stdout();

/// The files a command writes, as one transaction: each output is registered before any work (which
/// checks it: see file()) and written to a temporary file beside it; commit() renames them all into
/// place at the end. A command that fails leaves nothing of its run behind: the destructor removes the
/// temporaries and the folders this run created. Checkpoints are not registered here: they are meant to
/// survive a failure.
class Outputs {
 public:
  Outputs() = default;
  Outputs(const Outputs&) = delete;
  Outputs& operator=(const Outputs&) = delete;
  ~Outputs();

  /// An input file (named by `option`, e.g. "--train"): no output may be it (same file, also through
  /// links). Paths that do not exist are ignored (reading them fails on its own).
  void input(const std::string& path, const std::string& option);
  /// Registers output `path` (named by `option`) and returns the temporary path to write instead.
  /// Checked now: the folder exists and is writable (a temporary is created there), the path is not a
  /// folder, a device or a FIFO, it is not one of the inputs and no other output has the same name.
  std::string file(const std::string& path, const std::string& option);
  /// An output written as stem + suffix for each suffix (a training curve's .json and .png); returns
  /// the temporary stem.
  std::string stem(const std::string& stem, const std::vector<std::string>& suffixes, const std::string& option);
  /// A file the command writes outside the transaction (train --checkpoint: meant to outlive a failure):
  /// checked like an output now (it may be the input named by option `may_be`, e.g. --resume).
  void side_file(const std::string& path, const std::string& option, const std::string& may_be = "");
  /// A folder that will hold outputs: created now when missing (and removed again if the command fails).
  void folder(const std::string& dir, const std::string& option);
  /// A folder whose contents the command writes (geoloc demo --out): returns a temporary folder to write
  /// into (inside `dir` when it exists, else beside it); commit() moves its files into `dir` (replacing
  /// files of the same name), or renames it to `dir`.
  std::string folder_contents(const std::string& dir, const std::string& option);
  /// Checks standard output (check_stdout), then renames every temporary over its target.
  void commit();

 private:
  struct Pending {
    std::string temp, target, option;
    bool folder = false;  // folder_contents
  };
  void check_not_input(const std::string& target, const std::string& option) const;
  void add(Pending p, const std::string& clash_message);
  std::map<std::string, std::pair<std::string, std::string>> inputs_;  // file key -> (path, option)
  std::map<std::string, size_t> targets_;                              // file key -> pending_ index
  std::map<std::string, std::pair<std::string, std::string>> side_;    // file key -> (path, option)
  std::vector<Pending> pending_;
  std::vector<std::string> created_dirs_;  // by this run, outermost first
  bool committed_ = false;
};

/// On SIGINT, SIGTERM and SIGHUP: removes this process's temporaries (Outputs', and write_file_atomic's
/// inside them) and the folders it created for outputs, then dies of the signal as before. Called once
/// by main().
void install_signal_cleanup();

/// ValueError unless `s` is valid UTF-8 (names that end up in JSON, e.g. scene names).
void check_utf8(const std::string& s, const std::string& what);

}  // namespace geoloc::cli

#define GEOLOC_CLI_CAT2(a, b) a##b
#define GEOLOC_CLI_CAT(a, b) GEOLOC_CLI_CAT2(a, b)
/// Registers a sub-command: GEOLOC_COMMAND("partition", "build S2 partitionings", run_partition);
#define GEOLOC_COMMAND(name, summary, fn) \
  static ::geoloc::cli::Registrar GEOLOC_CLI_CAT(geoloc_command_, __LINE__)(name, summary, fn)
