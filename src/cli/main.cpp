// `geoloc`: the command-line program. Each sub-command lives in its own cmd_*.cpp and registers itself.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <limits>
#include <new>

#include "cli.hpp"
#include "geoloc/build_info.hpp"
#include "geoloc/detail/input_file.hpp"
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
  auto known = [&](const std::string& a) {  // "--name" or "--name=value" naming an option of this command
    if (a.rfind("--", 0) != 0 || a.size() == 2) return false;
    return find(a.substr(2, a.find('=') == std::string::npos ? std::string::npos : a.find('=') - 2)) != nullptr;
  };
  bool options_done = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (!options_done && a == "--") {
      options_done = true;
      continue;
    }
    if (!options_done && a == "-h") a = "--help";
    if (options_done || a.rfind("--", 0) != 0) {
      if (!options_done && a.size() > 1 && a[0] == '-') {
        // -steps 5: a single dash is not an option here, and it must not silently become a file name
        const std::string name = a.substr(1, a.find('=') == std::string::npos ? std::string::npos : a.find('=') - 1);
        if (find(name))
          throw ValueError(detail::cat("unknown option '", a, "': did you mean --", name, "? (see geoloc ", command_,
                                       " --help)"));
        if (positional_name_.empty() || std::isdigit(static_cast<unsigned char>(a[1])))
          throw ValueError(detail::cat("unexpected argument '", a, "' (see geoloc ", command_, " --help)"));
        throw ValueError(detail::cat("unknown option '", a, "' (an ", positional_name_,
                                     " whose name starts with '-' goes after --, or as ./", a, ")"));
      }
      GEOLOC_CHECK(!positional_name_.empty(), ValueError, "unexpected argument '", a, "': geoloc ", command_,
                   " takes options only (see geoloc ", command_, " --help)");
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
    GEOLOC_CHECK(!values_.count(key), ValueError, "option --", key, " given twice");
    if (spec->flag) {
      GEOLOC_CHECK(!has_value, ValueError, "option --", key, " takes no value");
      values_.insert_or_assign(key, std::string(1, '1'));  // (GCC 12 -Wrestrict misfires on = "1")
    } else {
      if (!has_value) {
        GEOLOC_CHECK(i + 1 < argc, ValueError, "option --", key, " needs a value");
        // --checkpoint --steps 5: the value was forgotten (a value that starts with -- goes as --key=--v)
        GEOLOC_CHECK(!known(argv[i + 1]), ValueError, "option --", key, " needs a value (got the option ",
                     argv[i + 1], "; write --", key, "=VALUE for a value that starts with --)");
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

namespace {

std::string int_range_text(long long lo, long long hi) {
  if (hi == LLONG_MAX) return detail::cat(">= ", lo);
  if (lo == LLONG_MIN) return detail::cat("<= ", hi);
  return detail::cat("from ", lo, " to ", hi);
}

// (bounds at or beyond the largest float mean "none": such options are stored as float)
std::string double_range_text(double lo, double hi) {
  const double big = std::numeric_limits<float>::max();
  const bool no_lo = lo <= -big, no_hi = hi >= big;
  if (no_lo && no_hi) return "";
  if (no_hi) return detail::cat(" >= ", lo);
  if (no_lo) return detail::cat(" <= ", hi);
  return detail::cat(" from ", lo, " to ", hi);
}

}  // namespace

long long parse_int(const std::string& text, long long lo, long long hi, const std::string& what) {
  long long v = 0;
  const char* b = text.data();
  const char* e = text.data() + text.size();
  const auto r = std::from_chars(b, e, v);  // whole string, no blanks, no '+', base 10
  GEOLOC_CHECK(r.ec != std::errc::invalid_argument && r.ptr == e && b != e, ValueError, what,
               " expects an integer ", int_range_text(lo, hi), ", got '", text, "'");
  GEOLOC_CHECK(r.ec != std::errc::result_out_of_range && v >= lo && v <= hi, ValueError, what, " expects an integer ",
               int_range_text(lo, hi), ", got '", text, "' (out of range)");
  return v;
}

double parse_double(const std::string& text, double lo, double hi, const std::string& what) {
  double v = 0;
  const char* b = text.data();
  const char* e = text.data() + text.size();
  const auto r = std::from_chars(b, e, v);  // whole string; "inf" and "nan" parse and are refused below
  GEOLOC_CHECK(r.ec != std::errc::invalid_argument && r.ptr == e && b != e, ValueError, what, " expects a number",
               double_range_text(lo, hi), ", got '", text, "'");
  GEOLOC_CHECK(r.ec != std::errc::result_out_of_range && std::isfinite(v), ValueError, what,
               " expects a finite number", double_range_text(lo, hi), ", got '", text, "'");
  GEOLOC_CHECK(v >= lo && v <= hi, ValueError, what, " expects a number", double_range_text(lo, hi), ", got '", text,
               "'", v > hi ? " (too large)" : "");
  return v;
}

long long Args::get_int(const std::string& key, long long lo, long long hi) const {
  return parse_int(get(key), lo, hi, "option --" + key);
}

double Args::get_double(const std::string& key, double lo, double hi) const {
  return parse_double(get(key), lo, hi, "option --" + key);
}

void check_output_path(const std::string& path) {
  namespace fs = std::filesystem;
  GEOLOC_CHECK(!path.empty(), IoError, "empty output path");
  struct stat st {};
  // Renaming a finished file over a device or a FIFO would replace the node itself (/dev/null!).
  if (::stat(path.c_str(), &st) == 0)
    GEOLOC_CHECK(S_ISREG(st.st_mode), IoError, "cannot write '", path, "': it is ", detail::file_kind(st.st_mode),
                 S_ISDIR(st.st_mode) ? "" : " (outputs are written to a temporary file and renamed over the target)");
  const fs::path dir = fs::path(path).has_parent_path() ? fs::path(path).parent_path() : fs::path(".");
  if (::stat(dir.c_str(), &st) != 0) {
    const int err = errno;
    throw IoError(err == ENOENT ? detail::cat("cannot write '", path, "': folder '", dir.string(), "' does not exist")
                                : detail::cat("cannot write '", path, "': folder '", dir.string(), "': ",
                                              std::strerror(err)));
  }
  GEOLOC_CHECK(S_ISDIR(st.st_mode), IoError, "cannot write '", path, "': '", dir.string(), "' is ",
               detail::file_kind(st.st_mode), ", not a folder");
  GEOLOC_CHECK(::access(dir.c_str(), W_OK) == 0, IoError, "cannot write '", path, "': folder '", dir.string(),
               "' is not writable: ", std::strerror(errno));
}

Device usable_device(const std::string& name) {
  const Device d = Device::parse(name);
  if (d.is_cuda()) Tensor::zeros({1}, DType::F32, d);  // creates the device's context, or throws CudaError
  return d;
}

void check_stdout() {
  errno = 0;
  const int rc = std::fflush(stdout);
  const int err = errno;
  if (rc != 0 || std::ferror(stdout)) {
    std::clearerr(stdout);
    throw IoError(detail::cat("cannot write to standard output: ",
                              err ? std::strerror(err) : "an earlier write failed"));
  }
}

void check_utf8(const std::string& s, const std::string& what) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = n > 0 && i + n <= s.size() && !(n == 2 && c < 0xC2);
    for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (ok && n == 3) {
      const auto c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);  // overlong, surrogates
    }
    if (ok && n == 4) {
      const auto c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90) && c <= 0xF4;
    }
    GEOLOC_CHECK(ok, ValueError, what, " '", s, "' is not valid UTF-8 (byte ", i + 1, ")");
    i += n;
  }
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
// (progress redrawn in place on a terminal, one line per report otherwise). Control characters that come
// from input (a NUL or a newline inside a file name in a manifest) are escaped: one whole line each.
static void install_printing_handlers() {
  geoloc::set_log_handler([](geoloc::LogLevel level, const std::string& m) {
    std::fprintf(stderr, "%s%s\n", level == geoloc::LogLevel::warning ? "geoloc: warning: " : "",
                 geoloc::detail::escape_controls(m).c_str());
  });
  static const bool tty = isatty(fileno(stderr)) != 0;
  geoloc::set_progress_handler([](const geoloc::ProgressEvent& e) {
    const std::string line = geoloc::detail::escape_controls(e.line);
    if (tty)
      std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), e.final ? "\n" : "");
    else
      std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
  });
}

// Standard output is checked at the end of every command (geoloc predict > /dev/full, or into a pipe
// closed early with SIGPIPE ignored): output that was lost is an error, not a success.
// (A command that already failed has said so: one line.)
static int finish(const std::string& who, int status) {
  try {
    geoloc::cli::check_stdout();
  } catch (const geoloc::Error& e) {
    if (status == 0) std::fprintf(stderr, "%s: error: %s\n", who.c_str(), e.what());
    return status == 0 ? 1 : status;
  }
  return status;
}

int main(int argc, char** argv) {
  install_printing_handlers();
  geoloc::cli::install_signal_cleanup();
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage();
    return finish("geoloc", argc < 2 ? 2 : 0);
  }
  if (!std::strcmp(argv[1], "--version")) {  // version, CPU path in use and those available, compiler, CUDA
    try {
      std::printf("%s\n", geoloc::build_info().c_str());
    } catch (const geoloc::Error& e) {  // e.g. GEOLOC_CPU naming a path this CPU lacks
      std::fprintf(stderr, "geoloc: error: %s\n", e.what());
      return 1;
    }
    return finish("geoloc", 0);
  }
  const std::string name = argv[1];
  for (const auto& c : geoloc::cli::registry()) {
    if (c.name != name) continue;
    const std::string who = "geoloc " + name;
    int status = 1;
    try {
      status = c.run(argc - 1, argv + 1);
    } catch (const geoloc::Error& e) {
      std::fprintf(stderr, "%s: error: %s\n", who.c_str(), e.what());
    } catch (const std::bad_alloc&) {
      std::fprintf(stderr, "%s: error: out of memory\n", who.c_str());
    } catch (const std::filesystem::filesystem_error& e) {  // names the path(s) and the system's reason
      std::fprintf(stderr, "%s: error: %s\n", who.c_str(), geoloc::detail::escape_controls(e.what()).c_str());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: internal error: %s\n", who.c_str(), geoloc::detail::escape_controls(e.what()).c_str());
    }
    return finish(who, status);
  }
  std::fprintf(stderr, "geoloc: unknown command '%s'\n", geoloc::detail::escape_controls(name).c_str());
  usage();
  return 2;
}
