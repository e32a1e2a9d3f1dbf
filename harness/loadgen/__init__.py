"""LoadGen plumbing: settings layering, log reading, audit configs."""
