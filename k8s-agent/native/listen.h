// Native listeners (listen.c): defined on the same addon as the splice (splice.c).
#ifndef HOPWAY_LISTEN_H
#define HOPWAY_LISTEN_H
#include <node_api.h>

void listen_define(napi_env env, napi_value exports);
// A JavaScript array of n numbers, undefined, a boolean (splice.c).
napi_value numbers(napi_env env, const double *vals, uint32_t n);
napi_value undefined_value(napi_env env);
napi_value boolean_value(napi_env env, int b);

// The splice thread (splice.c), for listen.c's connections that keep carrying. On the event loop's thread.
// Hands the two descriptors to the thread; 0 and the tunnel's id, or an errno.
int splice_attach(napi_env env, int fd_up, int fd_down, void *owner, double *id);
// Takes a handed-over tunnel back: 1 (and its bytes) when taken, 0 when its end is already reported.
int splice_take_back(napi_env env, double id, double bytes[2]);
// A tunnel's bytes, and (clearing it) whether any moved since the last call: a live tunnel's, or
// one's whose end the thread reported and JavaScript has not taken yet (from the report); 0 after.
int splice_counts(double id, double bytes[2], int *moved);
// The thread let go of a tunnel listen.c handed over (`owner`): code 0 after both FINs, 1 after errno `err`.
void listen_thread_ended(void *owner, double up, double down, int code, int err);

#endif
