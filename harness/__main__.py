from harness.run.cuda_allocator import apply_default_allocator_settings

apply_default_allocator_settings()  # before anything imports torch and starts CUDA

from harness.cli import main  # noqa: E402

raise SystemExit(main())
