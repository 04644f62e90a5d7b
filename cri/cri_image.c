/* cri/: ImageService handlers, one function per RPC (see cri.h for the
 * handler contract).  None is implemented yet: the method table points
 * every ImageService RPC at cri_unimplemented, which answers
 * UNIMPLEMENTED naming the RPC.  A handler added here is declared in
 * cri_handlers.h and named in its line of cri_methods.c.
 */
#include "cri_handlers.h"
