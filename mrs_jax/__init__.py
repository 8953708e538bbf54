"""mrs-jax: certified patch defence by mask-guided randomized smoothing."""
