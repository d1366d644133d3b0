// Argument checking and results shared by the product addon (addon.c) and the test-only addon
// (tools/test-addon/test-addon.c): a wrong argument throws a TypeError with code FC_UFFD_USAGE,
// a result is a number (>= 0 success, -errno failure).
#ifndef FC_UFFD_NAPI_ARGS_H
#define FC_UFFD_NAPI_ARGS_H

#include <errno.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>

#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error(env, "FC_UFFD_NAPI", "N-API call failed: " #call); \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

static inline napi_value usage(napi_env env, const char *msg) {
  napi_throw_type_error(env, "FC_UFFD_USAGE", msg);
  return NULL;
}

static inline napi_value num(napi_env env, double v) {
  napi_value out;
  if (napi_create_double(env, v, &out) != napi_ok) return NULL;
  return out;
}

static inline napi_value neg_errno(napi_env env) { return num(env, -(double)errno); }

// Reads argument i as an integer that must be exactly representable (guest addresses are below
// 2^47, file offsets below 2^53).
static inline int arg_i64(napi_env env, napi_value *argv, size_t argc, size_t i, int64_t *out) {
  napi_valuetype t;
  if (i >= argc || napi_typeof(env, argv[i], &t) != napi_ok || t != napi_number) return 0;
  double d;
  if (napi_get_value_double(env, argv[i], &d) != napi_ok) return 0;
  if (d != d || d < -9007199254740991.0 || d > 9007199254740991.0 || (double)(int64_t)d != d) return 0;
  *out = (int64_t)d;
  return 1;
}

// Reads argument i as a byte range of a Buffer, TypedArray or ArrayBuffer (napi does not treat a
// SharedArrayBuffer as an ArrayBuffer: callers pass a typed-array view of one).
static inline int arg_bytes(napi_env env, napi_value *argv, size_t argc, size_t i, uint8_t **data, size_t *len) {
  if (i >= argc) return 0;
  bool is;
  void *p = NULL;
  size_t n = 0;
  if (napi_is_typedarray(env, argv[i], &is) == napi_ok && is) {
    napi_typedarray_type type;
    size_t count, byte_offset;
    napi_value ab;
    if (napi_get_typedarray_info(env, argv[i], &type, &count, &p, &ab, &byte_offset) != napi_ok) return 0;
    size_t elem = 1;
    switch (type) {
      case napi_int16_array: case napi_uint16_array: elem = 2; break;
      case napi_int32_array: case napi_uint32_array: case napi_float32_array: elem = 4; break;
      case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: elem = 8; break;
      default: elem = 1;
    }
    n = count * elem;
  } else if (napi_is_arraybuffer(env, argv[i], &is) == napi_ok && is) {
    if (napi_get_arraybuffer_info(env, argv[i], &p, &n) != napi_ok) return 0;
  } else {
    return 0;
  }
  *data = p;
  *len = n;
  return 1;
}

static inline int arg_i32_array(napi_env env, napi_value *argv, size_t argc, size_t i, int32_t **data, size_t *count) {
  bool is;
  if (i >= argc || napi_is_typedarray(env, argv[i], &is) != napi_ok || !is) return 0;
  napi_typedarray_type type;
  napi_value ab;
  size_t off;
  void *p;
  if (napi_get_typedarray_info(env, argv[i], &type, count, &p, &ab, &off) != napi_ok) return 0;
  if (type != napi_int32_array) return 0;
  *data = p;
  return 1;
}

#define ARGS(n)                                           \
  size_t argc = n;                                        \
  napi_value argv[n];                                     \
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL))

#endif
