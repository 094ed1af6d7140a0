"""What more than one runtime needs: the contracts and the command-line errors (standard library only), and
the audio decoding.

Every bundle that needs a module here carries it at this path, so ``from common import contract`` reads the
same in the repository, the training job, the endpoint, the staging build and the Lambdas.
"""
