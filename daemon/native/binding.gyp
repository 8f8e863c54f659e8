{
  "targets": [{
    "target_name": "nanollm",
    "sources": ["src/addon.cpp", "src/Library.cpp", "src/Model.cpp", "src/Sampler.cpp", "src/Loop.cpp", "src/Context.cpp",
                "src/Mtmd.cpp", "src/Projector.cpp", "src/MtmdTest.cpp"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "llama/include", "llama/ggml/include"],
    "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
    "cflags_cc": ["-std=c++17", "-O2", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "<@(sanitize)"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
    "ldflags": ["<@(sanitize)"],
    "libraries": ["-ldl", "-lpthread"]
  }],
  "variables": { "sanitize%": [] }
}
