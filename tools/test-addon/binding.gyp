{
  "targets": [
    {
      "target_name": "uffd_test_native",
      "sources": ["test-addon.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
