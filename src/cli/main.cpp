// `geoloc`: the command-line program. Each sub-command lives in its own cmd_*.cpp and registers itself.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "cli.hpp"
#include "geoloc/build_info.hpp"
#include "geoloc/log.hpp"

namespace geoloc::cli {

std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}

const Args::Spec* Args::find(const std::string& name) const {
  for (const auto& s : specs_)
    if (s.name == name) return &s;
  return nullptr;
}

bool Args::parse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0 || a.size() == 2) {
      positional_.push_back(a);
      continue;
    }
    std::string key(a.begin() + 2, a.end()), value;
    bool has_value = false;
    if (auto eq = key.find('='); eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
      has_value = true;
    }
    const Spec* spec = find(key);
    GEOLOC_CHECK(spec, ValueError, "unknown option --", key, " (see geoloc ", command_, " --help)");
    if (spec->flag) {
      GEOLOC_CHECK(!has_value, ValueError, "option --", key, " takes no value");
      values_.insert_or_assign(key, std::string(1, '1'));  // (GCC 12 -Wrestrict misfires on = "1")
    } else {
      if (!has_value) {
        GEOLOC_CHECK(i + 1 < argc, ValueError, "option --", key, " needs a value");
        value = argv[++i];
      }
      values_[key] = value;
    }
  }
  if (has("help")) {
    print_help();
    return false;
  }
  return true;
}

void Args::print_help() const {
  std::printf("usage: geoloc %s %s\n\noptions:\n", command_.c_str(), usage_.c_str());
  for (const auto& s : specs_) {
    std::string left = "--" + s.name + (s.flag ? "" : " V");
    std::printf("  %-22s %s%s%s%s\n", left.c_str(), s.help.c_str(), s.fallback.empty() ? "" : " (default: ",
                s.fallback.c_str(), s.fallback.empty() ? "" : ")");
  }
}

std::string Args::get(const std::string& key) const {
  if (auto it = values_.find(key); it != values_.end()) return it->second;
  const Spec* spec = find(key);
  GEOLOC_CHECK(spec && !spec->fallback.empty(), ValueError, "missing required option --", key,
               " (see geoloc ", command_, " --help)");
  return spec->fallback;
}

long Args::get_int(const std::string& key) const {
  std::string v = get(key);
  char* end = nullptr;
  long r = std::strtol(v.c_str(), &end, 10);
  GEOLOC_CHECK(end && *end == 0 && !v.empty(), ValueError, "option --", key, " expects an integer, got '", v, "'");
  return r;
}

double Args::get_double(const std::string& key) const {
  std::string v = get(key);
  char* end = nullptr;
  double r = std::strtod(v.c_str(), &end);
  GEOLOC_CHECK(end && *end == 0 && !v.empty(), ValueError, "option --", key, " expects a number, got '", v, "'");
  return r;
}

void check_output_path(const std::string& path) {
  namespace fs = std::filesystem;
  GEOLOC_CHECK(!path.empty(), IoError, "empty output path");
  const fs::path dir = fs::path(path).has_parent_path() ? fs::path(path).parent_path() : fs::path(".");
  std::error_code ec;
  GEOLOC_CHECK(fs::is_directory(dir, ec), IoError, "cannot write '", path, "': folder '", dir.string(),
               "' does not exist");
  GEOLOC_CHECK(::access(dir.c_str(), W_OK) == 0, IoError, "cannot write '", path, "': folder '", dir.string(),
               "' is not writable");
  GEOLOC_CHECK(!fs::is_directory(path, ec), IoError, "cannot write '", path, "': it is a folder");
}

std::vector<std::string> Args::split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

}  // namespace geoloc::cli

static void usage() {
  auto cmds = geoloc::cli::registry();
  std::sort(cmds.begin(), cmds.end(), [](auto& a, auto& b) { return a.name < b.name; });
  std::printf("usage: geoloc <command> [options]   (geoloc <command> --help for its options; geoloc --version)\n\ncommands:\n");
  for (const auto& c : cmds) std::printf("  %-12s %s\n", c.name.c_str(), c.summary.c_str());
}

// The library prints nothing itself; the program prints its warnings, stage lines and progress on stderr
// (progress redrawn in place on a terminal, one line per report otherwise).
static void install_printing_handlers() {
  geoloc::set_log_handler([](geoloc::LogLevel level, const std::string& m) {
    std::fprintf(stderr, "%s%s\n", level == geoloc::LogLevel::warning ? "geoloc: warning: " : "", m.c_str());
  });
  static const bool tty = isatty(fileno(stderr)) != 0;
  geoloc::set_progress_handler([](const geoloc::ProgressEvent& e) {
    if (tty)
      std::fprintf(stderr, "\r\033[K%s%s", e.line.c_str(), e.final ? "\n" : "");
    else
      std::fprintf(stderr, "%s\n", e.line.c_str());
    std::fflush(stderr);
  });
}

int main(int argc, char** argv) {
  install_printing_handlers();
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {  // version, CPU path in use and those available, compiler, CUDA
    try {
      std::printf("%s\n", geoloc::build_info().c_str());
    } catch (const geoloc::Error& e) {  // e.g. GEOLOC_CPU naming a path this CPU lacks
      std::fprintf(stderr, "geoloc: error: %s\n", e.what());
      return 1;
    }
    return 0;
  }
  const std::string name = argv[1];
  for (const auto& c : geoloc::cli::registry()) {
    if (c.name != name) continue;
    try {
      return c.run(argc - 1, argv + 1);
    } catch (const geoloc::Error& e) {
      std::fprintf(stderr, "geoloc %s: error: %s\n", name.c_str(), e.what());
      return 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "geoloc %s: internal error: %s\n", name.c_str(), e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "geoloc: unknown command '%s'\n", name.c_str());
  usage();
  return 2;
}
