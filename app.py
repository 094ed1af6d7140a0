#!/usr/bin/env python3
"""AcousticShield CDK app: `cdk synth`, `cdk diff`, `cdk deploy` (see README)."""

import os

# jsii warns loudly on every start when the machine's Node.js is past its end of life.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")

from infra.app_builder import main

if __name__ == "__main__":
    main()
