// Native listeners (listen.c): defined on the same addon as the splice (splice.c).
#ifndef HOPWAY_LISTEN_H
#define HOPWAY_LISTEN_H
#include <node_api.h>

void listen_define(napi_env env, napi_value exports);

#endif
