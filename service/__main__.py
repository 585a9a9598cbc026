from hedgewatch.service.cli import main

main()
