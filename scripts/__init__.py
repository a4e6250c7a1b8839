"""Repository tooling (deploy, config checks): never uploaded to the Space, so the Space never imports it."""
