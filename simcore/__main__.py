from simcore.cli import main

raise SystemExit(main())
