"""Publishing: rank stories, plan feeds and pages, build their bytes, write the tree atomically."""
