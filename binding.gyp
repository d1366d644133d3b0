{
  "targets": [
    {
      "target_name": "uffd_native",
      "sources": ["native/addon.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
