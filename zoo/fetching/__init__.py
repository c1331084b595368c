"""Getting a model: download with resume, unpack, verify and publish into the cache, mirrors,
side-loading and cache upkeep. Knows nothing of TensorFlow: a user who only downloads needs none."""
