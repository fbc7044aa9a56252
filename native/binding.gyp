{
  "targets": [
    {
      "target_name": "ferry_uffd",
      "sources": ["uffd_tracker.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-std=gnu11"]
    }
  ]
}
