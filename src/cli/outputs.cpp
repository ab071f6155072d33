// Outputs (cli.hpp): a command's output files as one transaction, checked before the work.
#include <dirent.h>
#include <pthread.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "cli.hpp"
#include "geoloc/detail/input_file.hpp"

namespace geoloc::cli {
namespace {

namespace fs = std::filesystem;

// The absolute, normalised form of a path whose file may not exist yet (links in the existing part
// resolved), for comparing output names with each other.
std::string normal_form(const std::string& p) {
  std::error_code ec;
  const fs::path abs = fs::absolute(p, ec);
  if (ec) return p;
  const fs::path c = fs::weakly_canonical(abs, ec);
  return ec ? abs.lexically_normal().string() : c.string();
}

// What identifies a file: its device and inode where it exists (hard links, symbolic links, ./a and a
// are one file), else its normalised name. Kept in maps, so that checking thousands of outputs (one map
// per predicted image) against thousands of inputs stays cheap.
std::string file_key(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0)
    return "inode " + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  return "name " + normal_form(path);
}

fs::path folder_of(const std::string& path) {
  const fs::path p(path);
  return p.has_parent_path() ? p.parent_path() : fs::path(".");
}

// ---- cleanup on SIGINT, SIGTERM, SIGHUP: every temporary of this process starts with ".geoloc-<pid>-"
// (also write_file_atomic's own, which append to our names), so the handler removes, in each folder that
// received one, the entries with that prefix (folders recursively), then the folders this run created
// when they are empty, and dies of the signal. Only async-signal-safe calls (openat, getdents64,
// unlinkat); the registry is fixed-size and filled before the work.
constexpr int kMaxFolders = 32;
constexpr size_t kPathMax = 4096;
char g_folders[kMaxFolders][kPathMax];
char g_created[kMaxFolders][kPathMax];
std::atomic<int> g_nfolders{0}, g_ncreated{0};
char g_prefix[32];
size_t g_prefix_len = 0;

struct LinuxDirent64 {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[1];
};

// Removes the entries of directory `fd` whose names start with `prefix` ("" = all), folders with
// their contents (depth-limited).
void remove_entries(int fd, const char* prefix, size_t prefix_len, int depth) {
  alignas(8) char buf[4096];
  for (;;) {
    const long n = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (n <= 0) return;
    bool removed = false;
    for (long off = 0; off < n;) {
      const auto* d = reinterpret_cast<const LinuxDirent64*>(buf + off);
      off += d->d_reclen;
      const char* name = d->d_name;
      if ((name[0] == '.' && name[1] == 0) || (name[0] == '.' && name[1] == '.' && name[2] == 0)) continue;
      if (prefix_len && std::strncmp(name, prefix, prefix_len) != 0) continue;
      bool is_dir = d->d_type == DT_DIR;
      if (d->d_type == DT_UNKNOWN) {
        struct stat st {};
        is_dir = ::fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
      }
      if (is_dir && depth < 8) {
        const int sub = ::openat(fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (sub >= 0) {
          remove_entries(sub, "", 0, depth + 1);
          ::close(sub);
        }
        ::unlinkat(fd, name, AT_REMOVEDIR);
      } else if (!is_dir) {
        ::unlinkat(fd, name, 0);
      }
      removed = true;
    }
    if (removed) ::lseek(fd, 0, SEEK_SET);  // the listing changed: read it again from the start
  }
}

pthread_t g_main_thread;
volatile sig_atomic_t g_cleaning = 0;

void on_fatal_signal(int sig) {
  // The main thread is the one that writes outputs: the cleanup runs there, with it stopped (a signal
  // that lands on a worker thread is passed on).
  if (!pthread_equal(pthread_self(), g_main_thread)) {
    pthread_kill(g_main_thread, sig);
    return;
  }
  if (g_cleaning) return;
  g_cleaning = 1;
  const int saved = errno;
  for (int i = 0; i < g_nfolders.load(); ++i) {
    const int fd = ::open(g_folders[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) continue;
    remove_entries(fd, g_prefix, g_prefix_len, 0);
    ::close(fd);
  }
  for (int i = g_ncreated.load() - 1; i >= 0; --i) ::rmdir(g_created[i]);  // innermost last registered
  errno = saved;
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void remember(char (*list)[kPathMax], std::atomic<int>& count, const std::string& path) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  const std::string abs = fs::absolute(path).lexically_normal().string();
  if (abs.size() >= kPathMax) return;
  for (int i = 0; i < count.load(); ++i)
    if (abs == list[i]) return;
  const int n = count.load();
  if (n >= kMaxFolders) return;
  std::memcpy(list[n], abs.c_str(), abs.size() + 1);
  count.store(n + 1);  // published after the text is in place
}

// A fresh name in `dir`: hidden, short (whatever the target's length, far under NAME_MAX), unique to
// this process; the folder is remembered for the signal handler.
std::string temp_name(const fs::path& dir, const std::string& suffix) {
  static std::atomic<int> counter{0};
  remember(g_folders, g_nfolders, dir.string());
  return (dir / (".geoloc-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + suffix)).string();
}

// Creates `temp` (empty, exclusively): proves that the folder takes a new file now, before the work,
// with the system's reason when it does not (read-only, permissions, a full inode table).
void create_placeholder(const std::string& temp, const std::string& target) {
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  GEOLOC_CHECK(fd >= 0, IoError, "cannot write '", target, "': cannot create a file in folder '",
               folder_of(target).string(), "': ", std::strerror(errno));
  ::close(fd);
}

// The extension of `path` (at most 16 characters), kept on the temporary for writers that look at it.
std::string short_extension(const std::string& path) {
  const std::string ext = fs::path(path).extension().string();
  return ext.size() <= 16 ? ext : "";
}

}  // namespace

void install_signal_cleanup() {
  std::snprintf(g_prefix, sizeof g_prefix, ".geoloc-%d-", static_cast<int>(::getpid()));
  g_prefix_len = std::strlen(g_prefix);
  struct sigaction sa {};
  g_main_thread = pthread_self();
  sa.sa_handler = on_fatal_signal;
  sigfillset(&sa.sa_mask);  // no other signal runs while one is handled
  for (const int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction old {};
    // a signal ignored by the caller (nohup, a background job) stays ignored
    if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
    ::sigaction(sig, &sa, nullptr);
  }
}

Outputs::~Outputs() {
  if (committed_) return;
  std::error_code ec;
  for (const auto& p : pending_) fs::remove_all(p.temp, ec);  // (a folder for folder_contents)
  for (auto it = created_dirs_.rbegin(); it != created_dirs_.rend(); ++it) fs::remove(*it, ec);  // only if empty
}

void Outputs::check_not_input(const std::string& target, const std::string& option) const {
  if (auto it = inputs_.find(file_key(target)); it != inputs_.end())
    throw IoError(detail::cat(option, " '", target, "' is the same file as ", it->second.second, " '", it->second.first,
                              "': writing it would destroy that (choose another output name)"));
}

void Outputs::input(const std::string& path, const std::string& option) {
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return;  // (reading it fails on its own)
  const std::string key = file_key(path);
  if (auto it = targets_.find(key); it != targets_.end()) {
    const Pending& p = pending_[it->second];
    throw IoError(detail::cat(p.option, " '", p.target, "' is the same file as ", option, " '", path,
                              "': writing it would destroy that (choose another output name)"));
  }
  inputs_.emplace(key, std::make_pair(path, option));
}

void Outputs::side_file(const std::string& path, const std::string& option, const std::string& may_be) {
  check_output_path(path);
  const std::string key = file_key(path);
  if (auto it = inputs_.find(key); it != inputs_.end() && it->second.second != may_be) check_not_input(path, option);
  if (auto it = targets_.find(key); it != targets_.end())
    throw IoError(detail::cat(option, " '", path, "' names the same file as ", pending_[it->second].option, " '",
                              pending_[it->second].target, "'"));
  // proves the folder takes a file now, like the outputs' placeholders
  const std::string probe = temp_name(folder_of(path), "");
  create_placeholder(probe, path);
  ::unlink(probe.c_str());
  side_.emplace(key, std::make_pair(path, option));
}

void Outputs::add(Pending p, const std::string& clash_message) {
  const std::string key = file_key(p.target);
  if (auto it = targets_.find(key); it != targets_.end())
    throw IoError(detail::cat(clash_message, pending_[it->second].option, " '", pending_[it->second].target, "'"));
  if (auto it = side_.find(key); it != side_.end())
    throw IoError(detail::cat(clash_message, it->second.second, " '", it->second.first, "'"));
  create_placeholder(p.temp, p.target);
  targets_.emplace(key, pending_.size());
  pending_.push_back(std::move(p));
}

std::string Outputs::file(const std::string& path, const std::string& option) {
  check_output_path(path);
  check_not_input(path, option);
  add({temp_name(folder_of(path), short_extension(path)), path, option},
      detail::cat(option, " '", path, "' names the same file as "));
  return pending_.back().temp;
}

std::string Outputs::stem(const std::string& stem, const std::vector<std::string>& suffixes, const std::string& option) {
  const std::string temp = temp_name(folder_of(stem), "");
  for (const auto& suffix : suffixes) {
    const std::string path = stem + suffix;
    check_output_path(path);
    check_not_input(path, option);
    add({temp + suffix, path, option}, detail::cat(option, " '", stem, "' writes '", path, "', and so does "));
  }
  return temp;
}

void Outputs::folder(const std::string& dir, const std::string& option) {
  GEOLOC_CHECK(!dir.empty(), IoError, option, ": empty folder name");
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    GEOLOC_CHECK(S_ISDIR(st.st_mode), IoError, option, " '", dir, "' is ", detail::file_kind(st.st_mode),
                 ", not a folder");
    return;
  }
  GEOLOC_CHECK(errno == ENOENT, IoError, option, " '", dir, "': ", std::strerror(errno));
  // The folders that do not exist yet, innermost first: they are this run's.
  std::vector<fs::path> missing;
  fs::path p = fs::absolute(dir).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();  // "maps/" -> "maps"
  for (; ::stat(p.c_str(), &st) != 0 && errno == ENOENT; p = p.parent_path()) {
    missing.push_back(p);
    if (p == p.parent_path()) break;
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {  // a part of the path is a file, or a folder on the way is not writable
    std::error_code ignore;
    for (const auto& m : missing) fs::remove(m, ignore);
    throw IoError(detail::cat(option, ": cannot create folder '", dir, "': ", ec.message()));
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    created_dirs_.push_back(it->string());
    remember(g_created, g_ncreated, it->string());
  }
}

std::string Outputs::folder_contents(const std::string& dir, const std::string& option) {
  GEOLOC_CHECK(!dir.empty(), IoError, option, ": empty folder name");
  check_not_input(dir, option);
  struct stat st {};
  fs::path place;  // where the temporary folder goes: inside `dir` when it exists, else beside it
  if (::stat(dir.c_str(), &st) == 0) {
    GEOLOC_CHECK(S_ISDIR(st.st_mode), IoError, option, " '", dir, "' is ", detail::file_kind(st.st_mode),
                 ", not a folder");
    place = fs::absolute(dir).lexically_normal();
  } else {
    fs::path parent = fs::absolute(dir).lexically_normal();
    if (!parent.has_filename()) parent = parent.parent_path();  // "out/" -> "out"
    place = parent.parent_path();
    folder(place.string(), option);
  }
  Pending p{temp_name(place, ""), dir, option, true};
  GEOLOC_CHECK(::mkdir(p.temp.c_str(), 0755) == 0, IoError, option, ": cannot create a folder in '", place.string(),
               "': ", std::strerror(errno));
  targets_.emplace(file_key(dir), pending_.size());
  pending_.push_back(std::move(p));
  return pending_.back().temp;
}

namespace {

// Moves every file of `from` into `to` (which exists), replacing files of the same name, merging
// sub-folders; `from` is left empty and removed.
void merge_into(const fs::path& from, const fs::path& to) {
  std::vector<fs::path> entries;  // listed first: the folder is not changed while it is read
  for (const auto& e : fs::directory_iterator(from)) entries.push_back(e.path());
  for (const auto& e : entries) {
    const fs::path target = to / e.filename();
    std::error_code ec;
    if (fs::is_directory(e, ec) && fs::is_directory(target, ec)) {
      merge_into(e, target);
      continue;
    }
    fs::rename(e, target, ec);
    GEOLOC_CHECK(!ec, IoError, "cannot move '", e.string(), "' to '", target.string(), "': ", ec.message());
  }
  fs::remove(from);
}

}  // namespace

void Outputs::commit() {
  check_stdout();
  for (const auto& p : pending_) {
    struct stat st {};
    GEOLOC_CHECK(p.folder || (::stat(p.temp.c_str(), &st) == 0 && st.st_size > 0), IoError, p.option, " '", p.target,
                 "' was not written");
  }
  for (const auto& p : pending_) {
    std::error_code ec;
    if (p.folder && fs::is_directory(p.target, ec)) {
      merge_into(p.temp, p.target);
      continue;
    }
    fs::rename(p.temp, p.target, ec);
    GEOLOC_CHECK(!ec, IoError, "cannot rename '", p.temp, "' to '", p.target, "': ", ec.message());
  }
  committed_ = true;
}

}  // namespace geoloc::cli
