// The command-line contract under hostile input (issue #16), as a table: one row per case, each with its
// command line, its input set up beforehand, the exit status and a fragment of stderr it must give, the
// files that must not exist afterwards (nothing of a failed run is left behind) and the inputs that must
// be unchanged. For every row: never "internal error", a failure is exactly one "error:" line, and no
// temporary file (.geoloc-*, *.tmpNNN) survives anywhere in the fixture.
//
// Against another build of the program (e.g. the unfixed one, to see which rows it fails):
//   GEOLOC_CONTRACT_BIN=/path/to/bin/geoloc ./tests/geoloc_cli_tests -tc='*contract*'
// (GEOLOC_CONTRACT_KEEP=1 keeps the fixture folder for a look; GEOLOC_CONTRACT_ROWS=text runs only the rows
// whose name contains the text.) No row names a system file as an output:
// an unfixed geoloc run as root would rename its output over it.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "../pipeline/photos.hpp"
#include "cli_run.hpp"
#include "geoloc/image/image.hpp"
#include "geoloc/safetensors.hpp"
#include "geoloc/tensor.hpp"

namespace fs = std::filesystem;
using geoloc::test::Run;
using geoloc::test::run_command;
using geoloc::test::slurp;

namespace {

std::string geoloc_bin() {
  if (const char* b = std::getenv("GEOLOC_CONTRACT_BIN"); b && *b) return b;
  return std::string(GEOLOC_BIN_DIR) + "/geoloc";
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t at = 0; (at = s.find(from, at)) != std::string::npos; at += to.size()) s.replace(at, from.size(), to);
}

// How a command runs: standard output to a file, to a full disk, into a closed pipe (SIGPIPE ignored),
// or interrupted with SIGTERM once its first temporary file exists.
enum class Stdout { File, Full, ClosedPipe, Terminated };

struct Row {
  std::string name;
  std::string args;                            // after "geoloc "; {fix}, {row}, {model}, ... are replaced
  int status = 1;
  std::string err;                             // must appear on stderr
  std::vector<std::string> absent = {};        // must not exist afterwards
  std::vector<std::string> unchanged = {};     // same bytes afterwards
  std::function<void(const fs::path& row)> setup = {};
  Stdout out = Stdout::File;
  std::vector<std::string> present = {};       // must exist afterwards
  std::string out_has = "";                    // must appear on stdout
  bool needs_non_root = false;                 // permissions do not bind root
};

// Every leftover temporary under `dir`: .geoloc-* (cli Outputs) and *.tmpNNN (write_file_atomic).
std::vector<std::string> temporaries(const fs::path& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const std::string name = it->path().filename().string();
    const size_t tmp = name.rfind(".tmp");
    if (name.rfind(".geoloc-", 0) == 0 ||
        (tmp != std::string::npos && tmp + 4 < name.size() &&
         name.find_first_not_of("0123456789", tmp + 4) == std::string::npos))
      found.push_back(it->path().string());
  }
  return found;
}

}  // namespace

TEST_CASE("the CLI contract under hostile input: a table of commands, statuses, messages and leftovers") {
  // ---- fixtures (read-only for the rows; each row works in a fresh folder of its own)
  const auto set = geoloc::test::make_photos("contract", 2, 21);
  const fs::path fix = set.dir;
  std::map<std::string, std::string> vars;
  vars["{fix}"] = fix.string();
  vars["{manifest}"] = set.manifest;
  vars["{img}"] = (fix / "img" / "p0_0.png").string();
  vars["{img2}"] = (fix / "img" / "p1_0.png").string();
  vars["{model}"] = (fix / "model.safetensors").string();
  vars["{ck}"] = (fix / "ck.safetensors").string();
  vars["{knn}"] = (fix / "knn.safetensors").string();
  vars["{pts}"] = (fix / "points.csv").string();
  vars["{cells}"] = (fix / "c40.csv").string() + "," + (fix / "c20.csv").string();
  vars["{x}"] = (fix / "x.safetensors").string();
  // a network and cells small enough for a run in well under a second; {tiny} adds steps, batch, scenes
  vars["{arch}"] = "--arch resnet:basic:1-1:w8:k3s2:nopool --image-size 32 --resize 40 --cells 40,20 --tau-min 1";
  vars["{tiny}"] = vars["{arch}"] + " --steps 2 --batch 8 --scenes even,odd";
  auto expand = [&](std::string s, const fs::path& row) {
    replace_all(s, "{row}", row.string());
    for (const auto& [k, v] : vars) replace_all(s, k, v);
    return s;
  };
  // Built with this build's program (GEOLOC_BIN_DIR), whatever binary the rows run.
  const std::string own = std::string(GEOLOC_BIN_DIR) + "/geoloc ";
  Run r = run_command(own + expand("train --train {manifest} --out {model} {tiny} --checkpoint {ck}", fix),
                      fix);
  INFO(r.err);
  REQUIRE(r.status == 0);
  REQUIRE(fs::exists(fix / "ck.safetensors"));  // --checkpoint alone: written at the last step
  r = run_command(own + expand("index --model {model} --data {manifest} --out {knn}", fix), fix);
  REQUIRE(r.status == 0);
  {
    std::ofstream p(fix / "points.csv");
    p << "id,latitude,longitude\n";
    for (int i = 0; i < 100; ++i) p << i << "," << (i % 10) + 0.5 << "," << (i / 10) + 0.5 << "\n";
  }
  {  // two clusters of 10 points in one level-2 cell: kept whole (20 >= 15), dropped when split (10 + 10 < 15)
    std::ofstream p(fix / "two.csv");
    p << "latitude,longitude\n";
    for (int i = 0; i < 10; ++i) p << 1 + 0.001 * i << ",1\n" << 8 + 0.001 * i << ",8\n";
  }
  // the training run's own cells (same coordinates and settings): a partition set `import` accepts
  r = run_command(own + expand("partition --input {manifest} --output {fix}/c40.csv,{fix}/c20.csv --min 1 --max 40,20",
                               fix), fix);
  REQUIRE(r.status == 0);
  geoloc::safetensors::write((fix / "x.safetensors").string(),
                             std::vector<std::pair<std::string, geoloc::Tensor>>{
                                 {"input", geoloc::Tensor::zeros({1, 3, 32, 32})}});
  fs::create_directories(fix / "adir");
  REQUIRE(::mkfifo((fix / "fifo").c_str(), 0600) == 0);
  {  // a 3 GiB sparse "image" and "model": refused from their size, never read
    write_bytes(fix / "huge.png", std::string("\x89PNG\r\n\x1a\n", 8));
    fs::resize_file(fix / "huge.png", uint64_t{3} << 30);
    write_bytes(fix / "huge.safetensors", std::string(8, '\0'));
    fs::resize_file(fix / "huge.safetensors", uint64_t{3} << 30);
  }
  {  // a JPEG whose frame header claims 4000x4000 pixels over a 16x16 scan (which still ends in FF D9)
    geoloc::image::Image small(16, 16);
    for (auto& v : small.pixels) v = 128;
    std::vector<uint8_t> j = geoloc::image::encode_jpeg(small, 90);
    size_t p = 2;
    while (p + 9 < j.size() && !(j[p] == 0xFF && j[p + 1] == 0xC0)) p += 2 + ((j[p + 2] << 8) | j[p + 3]);
    REQUIRE(p + 9 < j.size());
    j[p + 5] = 0x0F, j[p + 6] = 0xA0, j[p + 7] = 0x0F, j[p + 8] = 0xA0;
    write_bytes(fix / "liar.jpg", std::string(j.begin(), j.end()));
  }
  // a file name that is not UTF-8 (Latin-1 "café")
  fs::copy_file(fix / "img" / "p0_0.png", fix / "img" / std::string("caf\xe9.png"));
  const std::string head = "image,latitude,longitude\n";
  write_bytes(fix / "bad3.csv", head + "img/p0_0.png,91,0\nimg/p0_1.png,1,2\nimg/p1_0.png,x,0\nimg/p1_1.png,1,999\n");
  write_bytes(fix / "cr.csv", "image,latitude,longitude\rimg/p0_0.png,1,2\rimg/p0_1.png,x,2\r");
  write_bytes(fix / "nul.csv", head + std::string("img/p0_0.png,4\0" "5,2\n", 18));
  write_bytes(fix / "nulpts.csv", std::string("latitude,longitude\n4\0" "5,2\n", 24));
  write_bytes(fix / "unreadable.csv", head + "adir,1,2\nfifo,3,4\n/dev/zero,5,6\nmissing.png,7,8\n");
  write_bytes(fix / "badval.csv", head + "img/p0_0.png,1,x\n");
  write_bytes(fix / "scenes-latin1.txt", "caf\xe9\nbeach\n");
  const std::string model_files = "{row}/m.safetensors";
  // The manifest with absolute image paths, for copies in a row's folder that a run could really use.
  std::string absolute_manifest = slurp(set.manifest);
  replace_all(absolute_manifest, "\nimg/", "\n" + (fix / "img").string() + "/");
  auto copy_manifest = [absolute_manifest](const fs::path& to) { write_bytes(to, absolute_manifest); };

  const Row rows[] = {
      // ---- not a regular file: refused by what it is, before reading (a FIFO must not block)
      {.name = "predict: a directory as an image", .args = "predict --model {model} {fix}/adir",
       .err = "image '{fix}/adir' is a directory"},
      {.name = "predict: a FIFO as an image", .args = "predict --model {model} {fix}/fifo", .err = "is a FIFO"},
      {.name = "predict: /dev/zero as an image", .args = "predict --model {model} /dev/zero",
       .err = "is a character device"},
      {.name = "predict: a 3 GiB sparse image", .args = "predict --model {model} {fix}/huge.png",
       .err = "is 3.0 GiB, over the limit"},
      {.name = "train: a directory as the manifest", .args = "train --train {fix}/adir --out " + model_files + " {tiny}",
       .err = "manifest '{fix}/adir' is a directory", .absent = {model_files}},
      {.name = "train: a FIFO as the manifest", .args = "train --train {fix}/fifo --out " + model_files + " {tiny}",
       .err = "is a FIFO", .absent = {model_files}},
      {.name = "eval: a directory as the model", .args = "eval --model {fix}/adir --data {manifest}",
       .err = "is a directory"},
      {.name = "eval: a FIFO as the model", .args = "eval --model {fix}/fifo --data {manifest}", .err = "is a FIFO"},
      {.name = "predict: a 3 GiB sparse model", .args = "predict --model {fix}/huge.safetensors {img}",
       .err = "huge.safetensors"},
      {.name = "index: manifest rows naming a directory, a FIFO, /dev/zero, a missing file",
       .args = "index --model {model} --data {fix}/unreadable.csv --out {row}/k.safetensors",
       .err = "none of its 4 images could be read", .absent = {"{row}/k.safetensors"}},
      {.name = "partition: a directory as the input", .args = "partition --input {fix}/adir --output {row}/c.csv --min 1 --max 10",
       .err = "CSV file '{fix}/adir' is a directory", .absent = {"{row}/c.csv"}},
      {.name = "partition: a FIFO as the input", .args = "partition --input {fix}/fifo --output {row}/c.csv --min 1 --max 10",
       .err = "is a FIFO", .absent = {"{row}/c.csv"}},
      {.name = "train: a FIFO as a partition file",
       .args = "train --train {manifest} --out " + model_files + " --partitions {fix}/fifo --steps 2",
       .err = "is a FIFO", .absent = {model_files}},
      {.name = "import: a FIFO as the weights",
       .args = "import --weights {fix}/fifo --partitions {cells} --out " + model_files, .err = "is a FIFO",
       .absent = {model_files}},
      {.name = "forward: a directory as the input",
       .args = "forward --weights {model} --input {fix}/adir --output {row}/y.safetensors", .err = "is a directory",
       .absent = {"{row}/y.safetensors"}},
      {.name = "import: /dev/zero as the scenes file",
       .args = "import --weights {model} --partitions {cells} --scenes-file /dev/zero --out " + model_files,
       .err = "is a character device", .absent = {model_files}},

      // ---- ordinary faults: an Error naming the path and the reason, never "internal error"
      {.name = "train: --out in a missing folder", .args = "train --train {manifest} --out {row}/no/m.safetensors {tiny}",
       .err = "folder '{row}/no' does not exist"},
      {.name = "train: --cache in a missing folder (checked before decoding)",
       .args = "train --train {manifest} --out " + model_files + " {tiny} --stream --cache {row}/no/cache",
       .err = "folder '{row}/no' does not exist", .absent = {model_files}},
      {.name = "train: --out is an existing folder", .args = "train --train {manifest} --out {row} {tiny}",
       .err = "it is a directory"},
      {.name = "index: --out is an existing folder", .args = "index --model {model} --data {manifest} --out {row}",
       .err = "it is a directory"},
      {.name = "eval: --json in a missing folder",
       .args = "eval --model {model} --data {manifest} --json {row}/no/m.json", .err = "does not exist"},
      {.name = "predict: --map-dir is a file", .args = "predict --model {model} --map-dir {img2} {img}",
       .err = "is a regular file, not a folder"},
      {.name = "predict: --map-dir under a file", .args = "predict --model {model} --map-dir {img2}/maps {img}",
       .err = "Not a directory"},
      {.name = "demo: --out is a file", .args = "demo --quick --out {img2}", .err = "is a regular file, not a folder"},
      {.name = "forward: --output is a folder", .args = "forward --weights {model} --input {x} --output {row}",
       .err = "it is a directory"},
      {.name = "import: --out in a missing folder",
       .args = "import --weights {model} --partitions {cells} --out {row}/no/m.safetensors", .err = "does not exist"},
      // (a FIFO of the row's own, never /dev/null: an unfixed geoloc run as root renames its model over the node)
      {.name = "train: --out is a FIFO (not a regular file: renaming over it would replace it)",
       .args = "train --train {manifest} --out {row}/pipe {tiny}", .err = "it is a FIFO (named pipe)",
       .setup = [](const fs::path& row) { REQUIRE(::mkfifo((row / "pipe").c_str(), 0600) == 0); }},
      {.name = "train: --out in a read-only folder",
       .args = "train --train {manifest} --out {row}/ro/m.safetensors {tiny}", .err = "Permission denied",
       .absent = {"{row}/ro/m.safetensors"}, .setup = [](const fs::path& row) {
         fs::create_directories(row / "ro");
         fs::permissions(row / "ro", fs::perms::owner_read | fs::perms::owner_exec);
       },
       .needs_non_root = true},
      {.name = "predict: --map-dir in a read-only folder",
       .args = "predict --model {model} --map-dir {row}/ro/maps {img}", .err = "Permission denied",
       .absent = {"{row}/ro/maps"}, .setup = [](const fs::path& row) {
         fs::create_directories(row / "ro");
         fs::permissions(row / "ro", fs::perms::owner_read | fs::perms::owner_exec);
       },
       .needs_non_root = true},
      {.name = "predict: a file name that is not UTF-8 goes into the JSON, invalid bytes replaced",
       .args = "predict --model {model} '{fix}/img/caf\xe9.png'", .status = 0, .out_has = "caf\xef\xbf\xbd.png\""},
      {.name = "train: a scene name that is not UTF-8",
       .args = "train --train {manifest} --out " + model_files + " {arch} --steps 2 --scenes 'caf\xe9,odd'",
       .err = "not valid UTF-8", .absent = {model_files}},
      {.name = "import: a scenes file that is not UTF-8",
       .args = "import --weights {model} --partitions {cells} --scenes-file {fix}/scenes-latin1.txt --out " + model_files,
       .err = "not valid UTF-8", .absent = {model_files}},

      // ---- values: parsed whole, range-checked, quoted as given
      {.name = "train: --batch past int",
       .args = "train --train {manifest} --out " + model_files + " {arch} --steps 2 --batch 99999999999",
       .err = "option --batch expects an integer from 1 to 2147483647, got '99999999999'", .absent = {model_files}},
      {.name = "train: --steps with trailing text", .args = "train --train {manifest} --out " + model_files + " --steps 5x",
       .err = "got '5x'", .absent = {model_files}},
      {.name = "train: --weight-decay inf",
       .args = "train --train {manifest} --out " + model_files + " {tiny} --weight-decay inf",
       .err = "option --weight-decay expects a finite number >= 0, got 'inf'", .absent = {model_files}},
      {.name = "train: --dropout nan", .args = "train --train {manifest} --out " + model_files + " {tiny} --dropout nan",
       .err = "got 'nan'", .absent = {model_files}},
      {.name = "train: --epochs inf",
       .args = "train --train {manifest} --out " + model_files + " {arch} --scenes even,odd --epochs inf",
       .err = "got 'inf'", .absent = {model_files}},
      {.name = "train: --lr inf", .args = "train --train {manifest} --out " + model_files + " {tiny} --lr inf",
       .err = "got 'inf'", .absent = {model_files}},
      {.name = "train: --min-level past 30",
       .args = "train --train {manifest} --out " + model_files + " {tiny} --min-level 40",
       .err = "option --min-level expects an integer from 0 to 30, got '40'", .absent = {model_files}},
      {.name = "train: a single-dash option", .args = "train --train {manifest} --out " + model_files + " -steps 5",
       .err = "did you mean --steps?", .absent = {model_files}},
      {.name = "train: a stray positional argument",
       .args = "train --train {manifest} --out " + model_files + " {tiny} extra", .err = "unexpected argument 'extra'",
       .absent = {model_files}},
      {.name = "train: an option given twice",
       .args = "train --train {manifest} --out " + model_files + " {tiny} --steps 3", .err = "--steps given twice",
       .absent = {model_files}},
      {.name = "train: an option's value forgotten",
       .args = "train --train {manifest} --out " + model_files + " --checkpoint --steps 2",
       .err = "option --checkpoint needs a value (got the option --steps", .absent = {model_files}},
      {.name = "train: --accumulate 0",
       .args = "train --train {manifest} --out " + model_files + " {tiny} --accumulate 0",
       .err = "option --accumulate expects an integer from 1 to 65536, got '0'", .absent = {model_files}},
      {.name = "train: a batch that does not split into the --accumulate micro-batches",
       .args = "train --train {manifest} --out " + model_files + " {arch} --steps 2 --batch 6 --accumulate 4",
       .err = "batch size 6 is not divisible into 4 micro-batches", .absent = {model_files}},
      {.name = "train: --distributed nccl on the CPU",
       .args = "train --train {manifest} --out " + model_files + " {tiny} --distributed nccl",
       .err = "--distributed nccl reduces CUDA tensors: it needs --device cuda", .absent = {model_files}},
      {.name = "train: --comm-timeout -1",
       .args = "train --train {manifest} --out " + model_files + " {tiny} --comm-timeout -1",
       .err = "option --comm-timeout expects", .absent = {model_files}},
      {.name = "train: --eval-every without --val",
       .args = "train --train {manifest} --out " + model_files + " {tiny} --eval-every 1", .err = "needs --val",
       .absent = {model_files}},
      {.name = "train: --checkpoint alone writes one (at the last step)",
       .args = "train --train {manifest} --out " + model_files + " {tiny} --checkpoint {row}/ck.safetensors",
       .status = 0, .present = {model_files, "{row}/ck.safetensors"}},
      {.name = "train: resuming a checkpoint past --steps",
       .args = "train --train {manifest} --out " + model_files + " {arch} --steps 1 --batch 8 --scenes even,odd --resume {ck}",
       .err = "nothing left to train", .absent = {model_files}, .unchanged = {"{ck}"}},
      {.name = "train: resuming a checkpoint exactly at --steps writes the model (killed after its last checkpoint)",
       .args = "train --train {manifest} --out " + model_files + " {tiny} --resume {ck}",
       .status = 0, .unchanged = {"{ck}"}, .present = {model_files}},
      {.name = "train: --device cuda:99 fails before the data is read",
       .args = "train --train {manifest} --out " + model_files + " {tiny} --device cuda:99", .err = "cuda:99",
       .absent = {model_files}},
      {.name = "index: --device cuda:4294967296 (past int)",
       .args = "index --model {model} --data {manifest} --out {row}/k.safetensors --device cuda:4294967296",
       .err = "bad device 'cuda:4294967296'", .absent = {"{row}/k.safetensors"}},
      {.name = "eval: a stray positional argument", .args = "eval --model {model} --data {manifest} extra",
       .err = "unexpected argument 'extra'"},
      {.name = "eval: --refine-radius nan", .args = "eval --model {model} --data {manifest} --refine-radius nan",
       .err = "got 'nan'"},
      {.name = "eval: --knn-k -1", .args = "eval --model {model} --data {manifest} --knn-k -1",
       .err = "option --knn-k expects an integer from 1"},
      {.name = "predict: --top -1", .args = "predict --model {model} --top -1 {img}",
       .err = "option --top expects an integer from 0"},
      {.name = "predict: a single-dash option", .args = "predict --model {model} -top 3 {img}",
       .err = "did you mean --top?"},
      {.name = "predict: a file name that starts with '-' is not taken for a file",
       .args = "predict --model {model} -x.png", .err = "unknown option '-x.png' (an IMAGE whose name starts with '-' goes after --",
       .setup = [&](const fs::path& row) { fs::copy_file(fix / "img" / "p0_0.png", row / "-x.png"); }},
      {.name = "predict: after --, a file name may start with '-'",
       .args = "predict --model {model} -- -x.png", .status = 0,
       .setup = [&](const fs::path& row) { fs::copy_file(fix / "img" / "p0_0.png", row / "-x.png"); },
       .out_has = "\"image\":\"-x.png\""},
      {.name = "predict: --batch without --shards", .args = "predict --model {model} --batch 99999999999 {img}",
       .err = "--batch needs --shards"},
      {.name = "index: a stray positional argument",
       .args = "index --model {model} --data {manifest} --out {row}/k.safetensors extra",
       .err = "unexpected argument 'extra'", .absent = {"{row}/k.safetensors"}},
      {.name = "forward: a single-dash option", .args = "forward -weights {model} --input {x} --output {row}/y.safetensors",
       .err = "did you mean --weights?", .absent = {"{row}/y.safetensors"}},
      {.name = "import: --mean with nan",
       .args = "import --weights {model} --partitions {cells} --mean 0.5,nan,0.5 --out " + model_files,
       .err = "got 'nan'", .absent = {model_files}},
      {.name = "partition: --min above --max",
       .args = "partition --input {pts} --output {row}/c.csv --min 50 --max 10", .err = "option --min (50) is above --max",
       .absent = {"{row}/c.csv"}},
      {.name = "partition: --max past int64",
       .args = "partition --input {pts} --output {row}/c.csv --min 1 --max 99999999999999999999",
       .err = "got '99999999999999999999' (out of range)", .absent = {"{row}/c.csv"}},
      {.name = "partition: a stray positional argument",
       .args = "partition --input {pts} --output {row}/c.csv --max 10 extra", .err = "unexpected argument",
       .absent = {"{row}/c.csv"}},
      {.name = "demo: --maps -1", .args = "demo --quick --maps -1 --out {row}/d", .err = "option --maps",
       .absent = {"{row}/d"}},
      {.name = "demo: a stray positional argument", .args = "demo --quick --out {row}/d extra",
       .err = "unexpected argument", .absent = {"{row}/d"}},

      // ---- an output that names an input: refused before any work, the input untouched
      {.name = "train: --out is the training manifest",
       .args = "train --train {row}/m.csv --out {row}/m.csv {tiny}", .err = "is the same file as --train",
       .unchanged = {"{row}/m.csv"}, .setup = [&](const fs::path& row) { copy_manifest(row / "m.csv"); }},
      {.name = "train: --out is the manifest through a symbolic link",
       .args = "train --train {row}/m.csv --out {row}/link.csv {tiny}", .err = "is the same file as --train",
       .unchanged = {"{row}/m.csv"}, .setup = [&](const fs::path& row) {
         copy_manifest(row / "m.csv");
         fs::create_symlink(row / "m.csv", row / "link.csv");
       }},
      {.name = "train: --out is a hard link to the manifest",
       .args = "train --train {row}/m.csv --out {row}/hard.safetensors {tiny}", .err = "is the same file as --train",
       .unchanged = {"{row}/m.csv"}, .setup = [&](const fs::path& row) {
         copy_manifest(row / "m.csv");
         fs::create_hard_link(row / "m.csv", row / "hard.safetensors");
       }},
      {.name = "train: --curve writes over --out (x.png)",
       .args = "train --train {manifest} --out {row}/x.png --curve {row}/x {tiny}", .err = "and so does --out",
       .absent = {"{row}/x.png", "{row}/x.json"}},
      {.name = "train: --out is the --resume checkpoint",
       .args = "train --train {manifest} --out {row}/ck.safetensors --resume {row}/ck.safetensors {arch} --scenes even,odd "
               "--steps 4",
       .err = "is the same file as --resume", .unchanged = {"{row}/ck.safetensors"},
       .setup = [&](const fs::path& row) { fs::copy_file(fix / "ck.safetensors", row / "ck.safetensors"); }},
      {.name = "train: --checkpoint is --out",
       .args = "train --train {manifest} --out " + model_files + " {tiny} --checkpoint " + model_files,
       .err = "--checkpoint '{row}/m.safetensors' names the same file as --out", .absent = {model_files}},
      {.name = "train: --checkpoint may be the --resume file",
       .args = "train --train {manifest} --out " + model_files + " {arch} --steps 3 --batch 8 --scenes even,odd "
               "--resume {row}/ck.safetensors --checkpoint {row}/ck.safetensors",
       .status = 0, .setup = [&](const fs::path& row) { fs::copy_file(fix / "ck.safetensors", row / "ck.safetensors"); },
       .present = {model_files, "{row}/ck.safetensors"}},
      {.name = "train: --checkpoint is the training manifest",
       .args = "train --train {row}/m.csv --out " + model_files + " {tiny} --checkpoint {row}/m.csv",
       .err = "is the same file as --train", .unchanged = {"{row}/m.csv"},
       .setup = [&](const fs::path& row) { copy_manifest(row / "m.csv"); }},
      {.name = "index: --out is the model",
       .args = "index --model {row}/m.safetensors --data {manifest} --out {row}/m.safetensors",
       .err = "is the same file as --model", .unchanged = {"{row}/m.safetensors"},
       .setup = [&](const fs::path& row) { fs::copy_file(fix / "model.safetensors", row / "m.safetensors"); }},
      {.name = "eval: --json is the test manifest",
       .args = "eval --model {model} --data {row}/m.csv --json {row}/m.csv", .err = "is the same file as --data",
       .unchanged = {"{row}/m.csv"}, .setup = [&](const fs::path& row) { copy_manifest(row / "m.csv"); }},
      {.name = "predict: a map would overwrite an input image",
       .args = "predict --model {model} --map-dir {row} {row}/a.png", .err = "is the same file as an image",
       .unchanged = {"{row}/a.png"}, .setup = [&](const fs::path& row) { fs::copy_file(fix / "img" / "p0_0.png", row / "a.png"); }},
      {.name = "predict: --manifest --out is the manifest",
       .args = "predict --model {model} --manifest {row}/m.csv --out {row}/m.csv", .err = "is the same file as --manifest",
       .unchanged = {"{row}/m.csv"}, .setup = [&](const fs::path& row) { copy_manifest(row / "m.csv"); }},
      {.name = "predict: a directory as --manifest", .args = "predict --model {model} --manifest {fix}/adir --out {row}/o.jsonl",
       .err = "is a directory, not a regular file", .absent = {"{row}/o.jsonl"}},
      {.name = "predict: --manifest with --map-dir",
       .args = "predict --model {model} --manifest {manifest} --out {row}/o.jsonl --map-dir {row}/maps",
       .err = "--manifest takes no image files, --shards, --place or --map-dir", .absent = {"{row}/o.jsonl", "{row}/maps"}},
      {.name = "predict: --out without --manifest", .args = "predict --model {model} --out {row}/o.jsonl {img}",
       .err = "--out and --resume go with --manifest", .absent = {"{row}/o.jsonl"}},
      {.name = "predict: --manifest --out that exists, without --resume",
       .args = "predict --model {model} --manifest {manifest} --out {row}/o.jsonl", .err = "--resume continues it",
       .unchanged = {"{row}/o.jsonl"}, .setup = [&](const fs::path& row) { std::ofstream(row / "o.jsonl") << "{}\n"; }},
      {.name = "predict: --manifest with a UTF-8 byte order mark, and an image name that is not UTF-8",
       .args = "predict --model {model} --manifest {row}/bom.csv --out {row}/o.jsonl", .status = 0,
       .setup =
           [&](const fs::path& row) {
             fs::copy_file(fix / "img" / "p0_0.png", row / "caf\xe9.png");
             write_bytes(row / "bom.csv", "\xEF\xBB\xBFimage\nmissing.png\ncaf\xe9-gone.png\ncaf\xe9.png\n");
           },
       .present = {"{row}/o.jsonl"}},
      {.name = "predict: --manifest with CR-only line ends (as training manifests)",
       .args = "predict --model {model} --manifest {row}/cr.csv --out {row}/o.jsonl", .status = 0,
       .setup = [&](const fs::path& row) { write_bytes(row / "cr.csv", "image,latitude\r" + (fix / "img" / "p0_0.png").string() + ",1\r"); },
       .present = {"{row}/o.jsonl"}},
      {.name = "partition: --output is --input",
       .args = "partition --input {row}/p.csv --output {row}/p.csv --min 1 --max 10", .err = "is the same file as --input",
       .unchanged = {"{row}/p.csv"}, .setup = [&](const fs::path& row) { fs::copy_file(fix / "points.csv", row / "p.csv"); }},
      {.name = "partition: one --output named twice",
       .args = "partition --input {pts} --output {row}/a.csv,{row}/./a.csv --min 1 --max 40,10",
       .err = "names the same file as --output", .absent = {"{row}/a.csv"}},
      {.name = "forward: --output is --input",
       .args = "forward --weights {model} --input {row}/x.safetensors --output {row}/x.safetensors",
       .err = "is the same file as --input", .unchanged = {"{row}/x.safetensors"},
       .setup = [&](const fs::path& row) { fs::copy_file(fix / "x.safetensors", row / "x.safetensors"); }},
      {.name = "import: --out is --weights",
       .args = "import --weights {row}/m.safetensors --partitions {cells} --out {row}/m.safetensors",
       .err = "is the same file as --weights", .unchanged = {"{row}/m.safetensors"},
       .setup = [&](const fs::path& row) { fs::copy_file(fix / "model.safetensors", row / "m.safetensors"); }},

      // ---- a failed command leaves nothing of its run behind; lost standard output is a failure
      {.name = "train: every image unreadable (fails after the outputs were reserved)",
       .args = "train --train {fix}/unreadable.csv --out " + model_files + " {tiny}",
       .err = "error:", .absent = {model_files, "{row}/m-curve.json", "{row}/m-curve.png"}},
      {.name = "train: a bad --val manifest (read after the training set)",
       .args = "train --train {manifest} --val {fix}/badval.csv --out " + model_files + " {tiny}",
       .err = "badval.csv line 2", .absent = {model_files, "{row}/m-curve.json", "{row}/m-curve.png"}},
      {.name = "train: standard output on a full disk",
       .args = "train --train {manifest} --out " + model_files + " {tiny}", .err = "cannot write to standard output",
       .absent = {model_files, "{row}/m-curve.json", "{row}/m-curve.png"}, .out = Stdout::Full},
      {.name = "partition: the second of two partitionings is empty",
       .args = "partition --input {fix}/two.csv --output {row}/a.csv,{row}/b.csv --min 15 --max 1000,15",
       .err = "no cell of {row}/b.csv keeps --min 15", .absent = {"{row}/a.csv", "{row}/b.csv"}},
      {.name = "partition: --min above --max by default (--min 50)",
       .args = "partition --input {pts} --output {row}/c.csv --max 10", .err = "option --min (50) is above --max (10)",
       .absent = {"{row}/c.csv"}},
      {.name = "partition: standard output on a full disk",
       .args = "partition --input {pts} --output {row}/a.csv,{row}/b.csv --min 1 --max 40,10",
       .err = "cannot write to standard output: No space left on device", .absent = {"{row}/a.csv", "{row}/b.csv"},
       .out = Stdout::Full},
      {.name = "predict: the second map cannot be written (its name is a folder)",
       .args = "predict --model {model} --map-dir {row}/maps {img} {img2}", .err = "it is a directory",
       .absent = {"{row}/maps/p0_0.png"}, .setup = [](const fs::path& row) { fs::create_directories(row / "maps" / "p1_0.png"); }},
      {.name = "predict: standard output on a full disk",
       .args = "predict --model {model} --map-dir {row}/maps {img} {img2}", .err = "No space left on device",
       .absent = {"{row}/maps"}, .out = Stdout::Full},
      {.name = "predict: standard output is a closed pipe (SIGPIPE ignored)",
       .args = "predict --model {model} --map-dir {row}/maps {img} {img2}", .err = "Broken pipe",
       .absent = {"{row}/maps"}, .out = Stdout::ClosedPipe},
      {.name = "eval: standard output on a full disk",
       .args = "eval --model {model} --data {manifest} --json {row}/m.json --calibration {row}/cal",
       .err = "No space left on device", .absent = {"{row}/m.json", "{row}/cal.json", "{row}/cal.png"},
       .out = Stdout::Full},
      {.name = "index: standard output on a full disk",
       .args = "index --model {model} --data {manifest} --out {row}/k.safetensors", .err = "No space left on device",
       .absent = {"{row}/k.safetensors"}, .out = Stdout::Full},
      {.name = "demo: standard output on a full disk (refused before the run)", .args = "demo --quick --out {row}/d",
       .err = "No space left on device", .absent = {"{row}/d"}, .out = Stdout::Full},
      {.name = "import: writes the model (the fixture's partitions fit the weights)",
       .args = "import --weights {model} --partitions {cells} --scenes even,odd --out " + model_files, .status = 0,
       .present = {model_files}},
      // (long runs only: the signal must find the command at work; a new --out folder is removed too)
      {.name = "train: SIGTERM during the run removes its temporaries and writes nothing",
       .args = "train --train {manifest} --out " + model_files + " {arch} --steps 1000000 --batch 8 --scenes even,odd",
       .status = 143, .absent = {model_files, "{row}/m-curve.json", "{row}/m-curve.png"}, .out = Stdout::Terminated},
      {.name = "demo: SIGTERM during the run leaves no folder",
       .args = "demo --quick --out {row}/d", .status = 143, .absent = {"{row}/d"}, .out = Stdout::Terminated},
      {.name = "forward: writes its output (all or nothing)",
       .args = "forward --weights {model} --input {x} --output {row}/y.safetensors", .status = 0,
       .present = {"{row}/y.safetensors"}},

      // ---- messages: one line, whole
      {.name = "train: three bad manifest rows, one line",
       .args = "train --train {fix}/bad3.csv --out " + model_files + " {tiny}",
       .err = "bad3.csv line 2: latitude '91' out of range [-90, 90] (and 2 more bad rows: lines 4, 5)",
       .absent = {model_files}},
      {.name = "train: CR-only line ends are line ends",
       .args = "train --train {fix}/cr.csv --out " + model_files + " {tiny}", .err = "cr.csv line 3: latitude 'x'",
       .absent = {model_files}},
      {.name = "train: a NUL byte in a manifest field is escaped, not the end of the message",
       .args = "train --train {fix}/nul.csv --out " + model_files + " {tiny}",
       .err = "latitude '4\\05' is not a number", .absent = {model_files}},
      {.name = "partition: a NUL byte in a CSV field is escaped",
       .args = "partition --input {fix}/nulpts.csv --output {row}/c.csv --min 1 --max 10",
       .err = "latitude '4\\05' is not a number", .absent = {"{row}/c.csv"}},
      {.name = "predict: a JPEG whose header claims far more pixels than its scan holds",
       .args = "predict --model {model} {fix}/liar.jpg", .err = "truncated JPEG"},
  };

  const bool root = ::geteuid() == 0;
  std::vector<std::string> failed;
  int n = 0;
  for (const Row& row : rows) {
    const fs::path rdir = fix / "rows" / std::to_string(n++);
    fs::create_directories(rdir);
    if (row.needs_non_root && root) continue;
    if (const char* only = std::getenv("GEOLOC_CONTRACT_ROWS"); only && row.name.find(only) == std::string::npos) continue;
    if (row.setup) row.setup(rdir);
    std::map<std::string, std::string> before;
    for (const auto& u : row.unchanged) before[u] = slurp(expand(u, rdir));
    // (run in the row's folder: every path in the table is absolute, except a file named -x.png)
    const std::string cd = "cd " + rdir.string() + " && ";
    const std::string cmd = "timeout 20 " + geoloc_bin() + " " + expand(row.args, rdir);
    const fs::path status_file = rdir / "status.txt";
    Run run;
    if (row.out == Stdout::File) {
      run = run_command(cd + cmd, rdir);
    } else if (row.out == Stdout::Terminated) {
      // (SIGTERM, not SIGINT: a background job of a non-interactive shell ignores SIGINT)
      const std::string wait_for_temp = "i=0; while [ $i -lt 400 ] && ! ls -A " + rdir.string() +
                                        " | grep -q '^\\.geoloc-'; do sleep 0.05; i=$((i+1)); done; ";
      run = run_command("{ " + cmd + " & pid=$!; " + wait_for_temp + "kill -TERM $pid; wait $pid; echo $? >" +
                            status_file.string() + "; }",
                        rdir);
      run.status = std::atoi(slurp(status_file).c_str());
    } else {
      const std::string inner = row.out == Stdout::Full
                                    ? "{ " + cd + cmd + " >/dev/full; echo $? >" + status_file.string() + "; }"
                                    // (writes into the pipe until its reader is gone, then runs geoloc)
                                    : "{ { (trap '' PIPE; while printf x 2>/dev/null; do sleep 0.01; done; " + cd +
                                          "exec " + cmd + "); echo $? >" + status_file.string() + "; } | true; }";
      run = run_command(inner, rdir);
      run.status = std::atoi(slurp(status_file).c_str());
    }
    const std::string expect_err = expand(row.err, rdir);
    bool ok = true;
    auto check = [&](bool c, const std::string& what) {
      if (!c) {
        ok = false;
        MESSAGE("row '", row.name, "': ", what, "\n  geoloc ", expand(row.args, rdir), "\n  status ", run.status,
                "\n  stderr: ", run.err);
      }
      CHECK(c);
    };
    check(run.status == row.status, "exit status " + std::to_string(run.status) + ", expected " + std::to_string(row.status));
    check(run.err.find("internal error") == std::string::npos, "\"internal error\" on stderr");
    check(expect_err.empty() || run.err.find(expect_err) != std::string::npos, "stderr lacks '" + expect_err + "'");
    if (row.status != 0 && row.out != Stdout::Terminated) {
      int errors = 0;
      for (size_t at = 0; (at = run.err.find("error:", at)) != std::string::npos; ++at) ++errors;
      check(errors == 1, "expected exactly one error line, got " + std::to_string(errors));
    }
    if (!row.out_has.empty()) check(run.out.find(row.out_has) != std::string::npos, "stdout lacks '" + row.out_has + "'");
    // (ostringstream: GCC 12's -Wrestrict misfires on "'" + std::string + "...")
    auto text = [](const std::string& path, const char* what) {
      std::ostringstream o;
      o << '\'' << path << "' " << what;
      return o.str();
    };
    for (const auto& a : row.absent) check(!fs::exists(expand(a, rdir)), text(expand(a, rdir), "exists afterwards"));
    for (const auto& p : row.present) check(fs::exists(expand(p, rdir)), text(expand(p, rdir), "was not written"));
    for (const auto& u : row.unchanged) check(slurp(expand(u, rdir)) == before[u], text(expand(u, rdir), "changed"));
    const auto left = temporaries(fix);
    check(left.empty(), "temporary left behind: " + (left.empty() ? std::string() : left.front()));
    for (const auto& t : left) fs::remove_all(t);
    if (!ok) failed.push_back(row.name);
    fs::permissions(rdir, fs::perms::owner_all, fs::perm_options::add);
    for (const auto& e : fs::recursive_directory_iterator(rdir))
      if (e.is_directory() && !e.is_symlink()) fs::permissions(e.path(), fs::perms::owner_all, fs::perm_options::add);
  }
  std::string summary;
  for (const auto& f : failed) summary += "\n  " + f;
  MESSAGE(failed.size(), " of ", n, " rows failed", summary);
  if (!std::getenv("GEOLOC_CONTRACT_KEEP")) fs::remove_all(fix);
}
