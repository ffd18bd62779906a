"""Payment providers. `gateway` is the one module that imports the `stripe` SDK."""
