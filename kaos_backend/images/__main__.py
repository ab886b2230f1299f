from kaos_backend.images.command import main

if __name__ == "__main__":
    main()
