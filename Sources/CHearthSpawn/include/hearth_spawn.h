/// posix_spawn helpers that Swift's Glibc module does not export.
#ifndef HEARTH_SPAWN_H
#define HEARTH_SPAWN_H

#include <spawn.h>

/// Adds a file action that closes every descriptor >= `lowest` in the child.
///
/// A parent's descriptors without close-on-exec (SwiftNIO accepts connections without it) would
/// otherwise live on in the child: a connection the parent's server closed stays open to its
/// client until the child exits. glibc >= 2.34 (`posix_spawn_file_actions_addclosefrom_np`);
/// returns 0, or an errno value (ENOSYS where the C library lacks it).
int hearth_spawn_close_from(posix_spawn_file_actions_t *_Nonnull actions, int lowest);

#endif
