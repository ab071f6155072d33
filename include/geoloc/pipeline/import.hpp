#pragma once
// Models made elsewhere: a ResNet with one linear classifier per partitioning (e.g. Müller-Budack et
// al.'s ECCV 2018 Lightning checkpoints, converted to safetensors by tools/convert_checkpoint.py) and
// the partition CSVs it was trained with become one geoloc model file that predict, eval, index and
// Locator::load accept.
#include <optional>
#include <string>
#include <vector>

#include "geoloc/pipeline/model.hpp"

namespace geoloc::pipeline {

struct ImportSpec {
  /// Weights in safetensors (torchvision names, `heads.<name>.*`): the converter's output or a geoloc
  /// file. PyTorch pickles (.ckpt, .pth) are refused with the converter's command line in the message.
  std::string weights;
  /// Partition CSVs (ECCV 2018 format), coarse to fine: the i-th belongs to the i-th partition head
  /// of the weights file, and its class count must equal that head's outputs.
  std::vector<std::string> partitions;
  /// Names of the scene head's classes (optional; a scene head without names predicts class numbers).
  std::vector<std::string> scene_names;
  Preprocess preprocess;            // the resize / crop / mean / std the model was trained with
  std::optional<std::string> arch;  // overrides the file's "arch" entry
};

struct ImportReport {
  std::vector<std::string> head_names;   // partition heads, coarse to fine
  std::vector<size_t> classes;           // their class counts
  /// Finest cells without a containing cell in some coarser partitioning (they get 1/size there).
  size_t missing_ancestors = 0;
};

/// Builds the model; IoError / ShapeError / ValueError naming the file and the problem: a pickle instead
/// of safetensors, a CSV that cannot be read, a class count that does not match its head, a number of
/// CSVs that differs from the number of partition heads, scene names that do not match the scene head.
GeoModel import_model(const ImportSpec& spec, ImportReport* report = nullptr);

}  // namespace geoloc::pipeline
