from modelway.cli import main

raise SystemExit(main())
