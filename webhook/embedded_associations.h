// The associations compiled into the binary (examples/associations.yaml), used when
// no --associations file is given.
#pragma once

#include <string_view>

namespace podidentity::webhook {

std::string_view EmbeddedAssociationsYaml();

}  // namespace podidentity::webhook
