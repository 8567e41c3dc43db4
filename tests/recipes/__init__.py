"""Backend modules exactly as the README's "Using another ENGINE" tells users to write them."""
