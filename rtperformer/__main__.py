from rtperformer.cli import main

raise SystemExit(main())
