{
  "targets": [
    {
      "target_name": "ferry_uffd",
      "sources": ["uffd_tracker.c", "uffd_postcopy.c", "page_seal.c", "fs_times.c", "seal_napi.c", "bulk_stream.c", "place_bench.c"],
      "libraries": ["-lpthread", "-ldl"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-std=gnu11"]
    }
  ]
}
