"""Where and how torch runs on this machine: device, threads, memory, and choices timed here with their cache."""
