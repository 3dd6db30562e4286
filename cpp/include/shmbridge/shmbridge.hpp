// shmbridge: n-d arrays between processes through shared memory, no serialization.
#pragma once

#include "shmbridge/channel.hpp"
#include "shmbridge/dtype.hpp"
#include "shmbridge/errors.hpp"
#include "shmbridge/layout.hpp"
#include "shmbridge/layout_v2.hpp"
#include "shmbridge/liveness.hpp"
#include "shmbridge/message.hpp"
#include "shmbridge/message_table.hpp"
#include "shmbridge/naming.hpp"
#include "shmbridge/protocol.hpp"
#include "shmbridge/schema.hpp"
#include "shmbridge/segment.hpp"
#include "shmbridge/wait.hpp"

namespace shmbridge {
inline constexpr int kVersionMajor = 0;
inline constexpr int kVersionMinor = 1;
inline constexpr int kVersionPatch = 0;
inline constexpr int kProtocolVersion = 1;
}  // namespace shmbridge
