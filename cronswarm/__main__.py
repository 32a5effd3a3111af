from cronswarm.cli import main

raise SystemExit(main())
