"""Request and response models per endpoint group; the OpenAPI document is built from them."""
