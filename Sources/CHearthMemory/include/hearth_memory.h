/// Process memory helpers for the agent (glibc specifics behind one portable call).
#ifndef HEARTH_MEMORY_H
#define HEARTH_MEMORY_H

/// Returns the heap's free pages to the kernel (`malloc_trim(0)` with glibc; nothing elsewhere).
/// Returns 1 when memory was released, 0 otherwise.
int hearth_release_free_memory(void);

#endif
