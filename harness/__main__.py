from harness.run.cuda_allocator import apply_default_allocator_settings

apply_default_allocator_settings()  # before anything imports torch and starts CUDA

from harness.cli import main  # noqa: E402
from harness.process_exit import exit_with  # noqa: E402

exit_with(main())
